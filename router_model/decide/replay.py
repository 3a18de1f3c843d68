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
from router_model.decide.gate import Action, Gate


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


@dataclass
class _Ladder:
    """Where every task stands while the ladder runs: the running state of one replay."""

    tier: np.ndarray
    retry: np.ndarray
    attempts_at: np.ndarray  # (n, T) attempts made at each tier
    calls: np.ndarray
    premium_calls: np.ndarray
    cost: np.ndarray
    latency: np.ndarray
    best_score: np.ndarray
    best: dict[str, np.ndarray]  # the attempt kept: sim, quality, valid, tier
    accepted: np.ndarray
    flagged: np.ndarray
    active: np.ndarray

    @classmethod
    def start(cls, tier: np.ndarray, n_tiers: int) -> _Ladder:
        n = len(tier)
        best = {k: np.zeros(n, dtype=d) for k, d in
                (("sim", float), ("quality", float), ("valid", bool), ("tier", np.int64))}
        return cls(tier=tier.copy(), retry=np.zeros(n, np.int64),
                   attempts_at=np.zeros((n, n_tiers), np.int64), calls=np.zeros(n, np.int64),
                   premium_calls=np.zeros(n, np.int64), cost=np.zeros(n), latency=np.zeros(n),
                   best_score=np.full(n, -np.inf), best=best, accepted=np.zeros(n, bool),
                   flagged=np.zeros(n, bool), active=np.ones(n, bool))

    def keep(self, idx: np.ndarray, mask: np.ndarray, **values: np.ndarray) -> None:
        """Make the attempts under `mask` the kept ones for tasks `idx`."""
        for k, v in values.items():
            self.best[k][idx[mask]] = v[mask]


def _attempt(cube: OutcomeCube, state: _Ladder, idx: np.ndarray, premium_idx: int
             ) -> dict[str, np.ndarray]:
    """One call for each active task: its outcome, charged to the task."""
    t = state.tier[idx]
    a = np.minimum(state.attempts_at[idx, t], cube.similarity.shape[2] - 1)
    state.attempts_at[idx, t] += 1
    state.calls[idx] += 1
    state.premium_calls[idx] += t == premium_idx
    state.cost[idx] += cube.call_cost[idx, t] + cube.gate_cost[idx, t]
    state.latency[idx] += cube.latency_s[idx, t]
    out = {"tier": t, "a": a, "sim": cube.similarity[idx, t, a],
           "quality": cube.quality[idx, t, a], "valid": cube.schema_valid[idx, t, a]}
    score = np.nan_to_num(out["sim"], nan=-1.0) + out["valid"].astype(float)
    better = score > state.best_score[idx]  # the best attempt so far is what a flag keeps
    state.best_score[idx[better]] = score[better]
    state.keep(idx, better, sim=out["sim"], quality=out["quality"], valid=out["valid"],
               tier=t)
    return out


def _trace(cube: OutcomeCube, state: _Ladder, idx: np.ndarray, step: int,
           out: dict[str, np.ndarray], action: np.ndarray, reason: np.ndarray
           ) -> dict[str, np.ndarray]:
    t = out["tier"]
    return {"task": idx, "attempt": np.full(idx.size, step + 1), "tier": t,
            "tier_attempt": out["a"] + 1, "retry": state.retry[idx], "similarity": out["sim"],
            "quality": out["quality"], "schema_valid": out["valid"],
            "cost_usd": cube.call_cost[idx, t], "gate_cost_usd": cube.gate_cost[idx, t],
            "latency_s": cube.latency_s[idx, t], "action": action, "next_reason": reason}


def replay(cube: OutcomeCube, start_tier: np.ndarray, catalog: Catalog, *,
           record_trace: bool = False) -> ReplayResult:
    """Run the ladder from `start_tier` (tier indices) for every task of `cube`."""
    gate = Gate.from_catalog(catalog)
    n = cube.n_tasks
    threshold = (gate.pass_thresholds(None, n) if cube.pass_threshold is None
                 else cube.pass_threshold)
    overflow_idx = catalog.tier_index(catalog.gate.overflow_tier)
    premium_idx = catalog.tier_index(catalog.premium)
    start = np.where(cube.overflow, overflow_idx, np.asarray(start_tier, dtype=np.int64))
    state = _Ladder.start(start, cube.similarity.shape[1])
    trace_parts: list[dict[str, np.ndarray]] = []
    max_steps = (gate.n_ladder + 1) * (gate.retries_per_tier + 1) + 1
    for step in range(max_steps):
        idx = np.flatnonzero(state.active)
        if idx.size == 0:
            break
        out = _attempt(cube, state, idx, premium_idx)
        action, nxt, nretry, reason = gate.next_step(out["tier"], state.retry[idx],
                                                     out["sim"], out["valid"],
                                                     threshold=threshold[idx])
        if record_trace:
            trace_parts.append(_trace(cube, state, idx, step, out, action, reason))
        done_ok, done_flag = action == Action.ACCEPT, action == Action.FLAG_FOR_REVIEW
        state.accepted[idx[done_ok]] = True
        state.keep(idx, done_ok, sim=out["sim"], quality=out["quality"], valid=out["valid"],
                   tier=out["tier"])
        state.flagged[idx[done_flag]] = True
        state.active[idx[done_ok | done_flag]] = False
        state.tier[idx], state.retry[idx] = nxt, nretry
    if state.active.any():  # cannot happen with consistent rules; fail loudly, not misreport
        raise RuntimeError(f"{int(state.active.sum())} tasks still active after {max_steps} "
                           "steps")
    return _result(state, start, threshold, gate.n_ladder, premium_idx, overflow_idx,
                   _trace_frame(trace_parts) if record_trace else None)


def _trace_frame(parts: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    trace = pd.DataFrame({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    return trace.sort_values(["task", "attempt"], kind="stable", ignore_index=True)


def _result(state: _Ladder, start: np.ndarray, threshold: np.ndarray, n_ladder: int,
            premium_idx: int, overflow_idx: int, trace: pd.DataFrame | None) -> ReplayResult:
    best = state.best
    return ReplayResult(
        calls=state.calls, cost=state.cost, latency_s=state.latency, start_tier=start,
        final_tier=best["tier"], final_similarity=best["sim"], final_quality=best["quality"],
        final_schema_valid=best["valid"], accepted=state.accepted,
        true_pass=best["valid"] & (best["quality"] >= threshold), flagged=state.flagged,
        escalated=(state.attempts_at[:, :n_ladder] > 0).sum(axis=1) > 1,
        reached_premium=(state.attempts_at[:, premium_idx] > 0) & (start != premium_idx)
        & (start != overflow_idx),
        premium_calls=state.premium_calls, trace=trace)


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
