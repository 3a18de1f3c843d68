"""Exact, vectorised replay of the rule ladder over a full outcome table.

Given every task's outcome at every tier and attempt (an `OutcomeCube`) and a start tier per
task, run the ladder for all tasks at once and report what each task cost, how many calls it
took, where it ended and whether it truly passed. The simulator uses it to write attempt logs;
offline evaluation uses it to score routing policies without calling any LLM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from router_model.config import Catalog
from router_model.gate import Action, Gate


@dataclass
class OutcomeCube:
    """Outcomes for n tasks x T tiers (Catalog.tier_names order) x A attempts.

    `similarity` is what the gate sees; `quality` is the true (latent) quality, so gate error is
    the gap between them. Costs and latencies are per call; `gate_cost` is the gate's own cost of
    judging one attempt. Attempts beyond A repeat the last attempt's outcome.
    """

    similarity: np.ndarray  # (n, T, A) float
    quality: np.ndarray  # (n, T, A) float
    schema_valid: np.ndarray  # (n, T, A) bool
    call_cost: np.ndarray  # (n, T) USD
    gate_cost: np.ndarray  # (n, T) USD
    latency_s: np.ndarray  # (n, T) seconds per call incl. gate
    overflow: np.ndarray  # (n,) bool: prompt + context over the overflow threshold
    pass_threshold: np.ndarray | None = None  # (n,) the field's gate threshold; None: gate's

    @property
    def n_tasks(self) -> int:
        return self.similarity.shape[0]

    def take(self, index: np.ndarray) -> OutcomeCube:
        return OutcomeCube(**{k: None if getattr(self, k) is None else getattr(self, k)[index]
                              for k in self.__dataclass_fields__})


@dataclass
class ReplayResult:
    """Per-task results of one replay, plus the attempt trace when requested."""

    calls: np.ndarray
    cost: np.ndarray
    latency_s: np.ndarray
    start_tier: np.ndarray
    final_tier: np.ndarray
    final_similarity: np.ndarray
    final_quality: np.ndarray
    final_schema_valid: np.ndarray
    accepted: np.ndarray  # the gate passed the final attempt
    true_pass: np.ndarray  # schema valid and true quality >= pass threshold
    flagged: np.ndarray
    escalated: np.ndarray  # changed tier at least once (not counting overflow routing)
    reached_premium: np.ndarray  # ended on premium after starting below it
    premium_calls: np.ndarray
    trace: pd.DataFrame | None = None


def replay(cube: OutcomeCube, start_tier: np.ndarray, catalog: Catalog, *,
           record_trace: bool = False) -> ReplayResult:
    """Run the ladder from `start_tier` (tier indices) for every task of `cube`."""
    gate = Gate.from_catalog(catalog)
    n, n_tiers, n_att = cube.similarity.shape
    threshold = (np.full(n, gate.pass_threshold) if cube.pass_threshold is None
                 else cube.pass_threshold)
    overflow_idx = catalog.tier_index(catalog.gate.overflow_tier)
    premium_idx = catalog.tier_index(catalog.premium)
    tier = np.where(cube.overflow, overflow_idx, np.asarray(start_tier, dtype=np.int64))
    start = tier.copy()
    retry = np.zeros(n, dtype=np.int64)
    attempts_at = np.zeros((n, n_tiers), dtype=np.int64)
    calls = np.zeros(n, dtype=np.int64)
    premium_calls = np.zeros(n, dtype=np.int64)
    cost = np.zeros(n)
    latency = np.zeros(n)
    best_score = np.full(n, -np.inf)
    best = {k: np.zeros(n, dtype=d) for k, d in
            (("sim", float), ("quality", float), ("valid", bool), ("tier", np.int64))}
    accepted = np.zeros(n, dtype=bool)
    flagged = np.zeros(n, dtype=bool)
    active = np.ones(n, dtype=bool)
    trace_parts: list[dict[str, np.ndarray]] = []
    max_steps = (gate.n_ladder + 1) * (gate.retries_per_tier + 1) + 1
    rows = np.arange(n)

    for step in range(max_steps):
        idx = rows[active]
        if idx.size == 0:
            break
        t = tier[idx]
        a = np.minimum(attempts_at[idx, t], n_att - 1)
        sim = cube.similarity[idx, t, a]
        quality = cube.quality[idx, t, a]
        valid = cube.schema_valid[idx, t, a]
        attempts_at[idx, t] += 1
        calls[idx] += 1
        premium_calls[idx] += t == premium_idx
        step_cost = cube.call_cost[idx, t] + cube.gate_cost[idx, t]
        cost[idx] += step_cost
        latency[idx] += cube.latency_s[idx, t]

        score = np.nan_to_num(sim, nan=-1.0) + valid.astype(float)
        better = score > best_score[idx]
        bi = idx[better]
        best_score[bi] = score[better]
        best["sim"][bi], best["quality"][bi] = sim[better], quality[better]
        best["valid"][bi], best["tier"][bi] = valid[better], t[better]

        action, nxt, nretry, reason = gate.next_step(t, retry[idx], sim, valid,
                                                     threshold=threshold[idx])
        done_ok = action == Action.ACCEPT
        done_flag = action == Action.FLAG_FOR_REVIEW
        if record_trace:
            trace_parts.append({
                "task": idx, "attempt": np.full(idx.size, step + 1), "tier": t,
                "tier_attempt": a + 1, "retry": retry[idx], "similarity": sim,
                "quality": quality, "schema_valid": valid, "cost_usd": cube.call_cost[idx, t],
                "gate_cost_usd": cube.gate_cost[idx, t], "latency_s": cube.latency_s[idx, t],
                "action": action, "next_reason": reason,
            })
        fin = idx[done_ok]
        accepted[fin] = True
        best["sim"][fin], best["quality"][fin] = sim[done_ok], quality[done_ok]
        best["valid"][fin], best["tier"][fin] = valid[done_ok], t[done_ok]
        flagged[idx[done_flag]] = True
        active[idx[done_ok | done_flag]] = False
        tier[idx], retry[idx] = nxt, nretry

    if active.any():  # cannot happen with consistent rules; fail loudly rather than misreport
        raise RuntimeError(f"{int(active.sum())} tasks still active after {max_steps} steps")

    final_tier = best["tier"]
    true_pass = best["valid"] & (best["quality"] >= threshold)
    trace = None
    if record_trace:
        trace = pd.DataFrame({k: np.concatenate([p[k] for p in trace_parts])
                              for k in trace_parts[0]})
        trace = trace.sort_values(["task", "attempt"], kind="stable", ignore_index=True)
    return ReplayResult(
        calls=calls, cost=cost, latency_s=latency, start_tier=start, final_tier=final_tier,
        final_similarity=best["sim"], final_quality=best["quality"],
        final_schema_valid=best["valid"], accepted=accepted, true_pass=true_pass,
        flagged=flagged,
        escalated=(attempts_at[:, :gate.n_ladder] > 0).sum(axis=1) > 1,
        reached_premium=(attempts_at[:, premium_idx] > 0) & (start != premium_idx)
        & (start != overflow_idx),
        premium_calls=premium_calls, trace=trace,
    )


OUTCOME_COLUMNS = ("task_id", "tier", "attempt", "similarity", "quality", "schema_valid",
                   "cost_usd", "gate_cost_usd", "latency_s")


def cube_from_table(tasks: pd.DataFrame, outcomes: pd.DataFrame, catalog: Catalog
                    ) -> OutcomeCube:
    """Rebuild the cube from a long outcome table (task x tier x attempt rows).

    Every task needs every tier in `catalog.tier_names` and attempts 1..A; a gap is an error
    that names the task and tier, because replaying over a hole would invent an outcome.
    """
    missing = [c for c in OUTCOME_COLUMNS if c not in outcomes.columns]
    if missing:
        raise ValueError(f"outcome table lacks columns {missing}; expected {OUTCOME_COLUMNS}")
    names = catalog.tier_names
    unknown = sorted(set(outcomes["tier"]) - set(names))
    if unknown:
        raise ValueError(f"outcome table has tiers {unknown} not in conf/tiers {names}")
    task_pos = pd.Series(np.arange(len(tasks)), index=tasks["task_id"].to_numpy())
    n, n_tiers, n_att = len(tasks), len(names), int(outcomes["attempt"].max())
    ti = task_pos.reindex(outcomes["task_id"].to_numpy()).to_numpy()
    if np.isnan(ti).any():
        bad = outcomes["task_id"].to_numpy()[np.isnan(ti)][0]
        raise ValueError(f"outcome table row has task_id={bad!r} that is not in the task table")
    ti = ti.astype(np.int64)
    tj = outcomes["tier"].map({t: i for i, t in enumerate(names)}).to_numpy(np.int64)
    ta = outcomes["attempt"].to_numpy(np.int64) - 1
    seen = np.zeros((n, n_tiers, n_att), dtype=bool)
    seen[ti, tj, ta] = True
    if not seen.all():
        i, j, a = np.argwhere(~seen)[0]
        raise ValueError(f"outcome table has no row for task_id={tasks['task_id'].iloc[i]!r}, "
                         f"tier={names[j]!r}, attempt={a + 1}; every task needs every tier")

    def cube_of(col: str, dtype: type) -> np.ndarray:
        out = np.zeros((n, n_tiers, n_att), dtype=dtype)
        out[ti, tj, ta] = outcomes[col].to_numpy(dtype)
        return out

    first = ta == 0

    def per_tier(col: str) -> np.ndarray:
        out = np.zeros((n, n_tiers))
        out[ti[first], tj[first]] = outcomes[col].to_numpy(float)[first]
        return out

    total = (tasks["prompt_tokens"] + tasks["context_tokens"]).to_numpy()
    return OutcomeCube(
        similarity=cube_of("similarity", float), quality=cube_of("quality", float),
        schema_valid=cube_of("schema_valid", bool), call_cost=per_tier("cost_usd"),
        gate_cost=per_tier("gate_cost_usd"), latency_s=per_tier("latency_s"),
        overflow=total > catalog.gate.context_overflow_tokens,
        pass_threshold=Gate.from_catalog(catalog).pass_thresholds(tasks["field"], n))
