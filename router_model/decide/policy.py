"""The routing policy: pick each task's start tier; the rule ladder takes over from there.

For every eligible ladder tier the calibrated model gives the probability that the first
attempt passes the gate. A model of the ladder (retries, schema escalations, severe jumps to
premium, the gate's own cost, optionally a price on latency, and the gate's false-pass rate
per tier) turns those into the expected cost and the probability of a bad final outcome
(accepted but truly failing, or flagged) of starting at each tier. The default rule starts
where the expected loss is smallest:

    loss(s) = E[cost | s] + lam x w(field) x E[bad outcome | s]

`lam` (USD per bad outcome) is the one dial: 0 with a perfect gate is the cheapest expected
cost, a large lam is premium; `w(field)` maps the field's impact score through
`impact_weights`. The older rule ("threshold": the cheapest expected cost among tiers whose
pass probability is at least knob + impact_slope x (impact - 5)) stays as a named
alternative. Serving and offline evaluation both go through `RoutingPolicy`, so what is
evaluated is what is served.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from router_model.config import Catalog, check
from router_model.contract import Decision
from router_model.decide.planner import build_planner
from router_model.logs.decision_ids import decision_ids
from router_model.model.artifact import ArtifactError, RouterArtifact, load_artifact
from router_model.model.compiled import compile_model
from router_model.model.features import FeatureError, flatten_task, task_columns
from router_model.model.lookup import LookupTable

RULES_VERSION = "rules-static-v1"
# A typical Phase-3 request: the OpenAPI example, and the task the tests and benchmarks use.
EXAMPLE_TASK: dict[str, Any] = {
    "field": "lesson_content", "prompt_tokens": 4000, "context_tokens": 9000,
    "expected_output_tokens": 1800,
    "analysis": {"domain": "programming", "audience_level": "beginner", "language": "en",
                 "complexity": 0.3, "analysis_completeness": 0.9, "section_count": 5,
                 "lesson_count": 20, "objective_count": 6, "source_tokens": 20000}}
DEFAULT_KNOB = 0.85
DEFAULT_LAM = 1.0
RULES = ("expected_loss", "threshold")
# Every policy an artifact carries a calibrated dial for: key -> (rule, uses the lookup
# table). `policy` is the product; the others are the simple baselines and the older rule,
# built from the same logs and calibrated the same way, so comparisons are like for like.
POLICY_VARIANTS = {"policy": ("expected_loss", False), "threshold_policy": ("threshold", False),
                   "lookup_policy": ("expected_loss", True),
                   "lookup_threshold": ("threshold", True)}
# What a decision reads of a task besides the model's features.
ROUTING_KEYS = ("field", "prompt_tokens", "context_tokens", "expected_output_tokens")


@dataclass(frozen=True)
class PolicySettings:
    """`router.policy` in config: a structured config, built with `config.typed`."""

    rule: str = "expected_loss"
    lam: float | None = None  # USD per bad outcome; None: calibrated into the artifact
    impact_weights: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
    false_pass_rate: float | None = None  # None: the artifact's audit estimates (else 0)
    knob: float | None = None  # threshold rule only; None: calibrated (else 0.85)
    impact_slope: float = 0.02
    epsilon: float = 0.0  # share of randomised start tiers (exploration, propensity logged)
    latency_price_per_s: float = 0.0
    default_schema_share: float = 0.1
    default_severe_share: float = 0.05
    default_retry_pass_rate: float = 0.6
    default_output_tokens: float = 500.0

    def __post_init__(self) -> None:
        check(self.rule in RULES, "router.policy.rule", self.rule, f"must be one of {RULES}")
        check(0.0 <= self.epsilon <= 1.0, "router.policy.epsilon", self.epsilon,
              "must be in [0, 1]")
        check(self.lam is None or self.lam >= 0, "router.policy.lam", self.lam,
              "must be >= 0 USD per bad outcome (or null for the calibrated value)")
        check(len(self.impact_weights) == 10 and min(self.impact_weights) >= 0,
              "router.policy.impact_weights", self.impact_weights,
              "needs 10 weights >= 0, one per impact score 1..10")
        check(self.false_pass_rate is None or 0 <= self.false_pass_rate < 1,
              "router.policy.false_pass_rate", self.false_pass_rate, "must be in [0, 1)")
        if self.knob is not None:
            check(0.0 <= self.knob <= 1.0, "router.policy.knob", self.knob,
                  "must be in [0, 1] (or null for the calibrated knob)")
        check(self.latency_price_per_s >= 0, "router.policy.latency_price_per_s",
              self.latency_price_per_s, "must be >= 0")


@dataclass(frozen=True)
class Fields:
    """Each task's field as a code into the distinct fields: a per-field table is then read
    once per distinct field (many tasks hold a few dozen), not once per task."""

    codes: np.ndarray
    names: list[Any]

    @classmethod
    def of(cls, fields: Fields | pd.Series | Sequence[str]) -> Fields:
        """From a frame's column (compared as text, missing stays missing) or field names."""
        if isinstance(fields, Fields):
            return fields
        if isinstance(fields, pd.Series):
            codes, names = pd.factorize(fields.astype(str), use_na_sentinel=False)
            return cls(codes, list(names))
        index: dict[Any, int] = {}
        codes = [index.setdefault(f, len(index)) for f in fields]
        return cls(np.array(codes, dtype=np.intp), list(index))

    def lookup(self, table: Mapping[str, Any], default: float) -> np.ndarray:
        """Per task, the field's value in `table` (else `default`), as floats."""
        return np.array([table.get(f, default) for f in self.names], dtype=float)[self.codes]


def explore(greedy: np.ndarray, eligible: np.ndarray, epsilon: float,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epsilon-greedy start tiers over each task's eligible tiers.

    Returns (start, explored?, propensity of the start). The one definition of a propensity:
    the log world model and serving both draw here. Tasks with one eligible tier never explore.
    """
    check(0.0 <= epsilon <= 1.0, "epsilon", epsilon, "must be in [0, 1]")
    greedy = np.asarray(greedy, dtype=np.int64)
    eligible = np.asarray(eligible, dtype=bool)
    n_eligible = eligible.sum(axis=1)
    can = n_eligible > 1
    explored = (rng.random(greedy.size) < epsilon) & can
    # Every task draws from a range of at least two, so one task's eligibility never shifts
    # the random stream of the tasks after it (a range of one draws nothing).
    pick = rng.integers(0, np.where(can, n_eligible, max(eligible.shape[1], 2)))
    random_tier = np.argmax(np.cumsum(eligible, axis=1) > pick[:, None], axis=1)
    start = np.where(explored, random_tier, greedy)
    propensity = np.where(can, (1.0 - epsilon) * (start == greedy)
                          + epsilon / np.maximum(n_eligible, 1), 1.0)
    return start, explored, propensity


class LadderCostModel:
    """Expected cost, calls and pass probability of running the ladder from each start tier.

    Attempts at a tier are modelled as passing with the model's probability on the first try
    and with the tier's logged retry pass rate afterwards; a failure is a schema error, a
    severe miss or a near miss in the proportions seen in the logs.
    """

    def __init__(self, catalog: Catalog, settings: PolicySettings,
                 ladder_stats: Mapping[str, Any] | None = None) -> None:
        self.catalog = catalog
        self.settings = settings
        stats = (ladder_stats or {}).get("tiers", {})
        self.schema_share = np.array([stats.get(t, {}).get("schema_share",
                                      settings.default_schema_share) for t in catalog.ladder])
        self.severe_share = np.array([stats.get(t, {}).get("severe_share",
                                      settings.default_severe_share) for t in catalog.ladder])
        retry = [stats.get(t, {}).get("retry_pass_rate", np.nan) for t in catalog.ladder]
        self.retry_pass = np.where(np.isnan(retry), settings.default_retry_pass_rate, retry)
        # Per tier (schema share, severe share, near-miss share, retry pass rate) as Python
        # floats: the one-task programme runs on floats, where numpy scalars cost far more.
        self.tier_constants = [
            (float(fs), float(fv), 1.0 - float(fs) - float(fv), float(rp)) for fs, fv, rp
            in zip(self.schema_share, self.severe_share, self.retry_pass, strict=True)]

    def attempt_cost(self, prompt_total: Any, output: Any) -> tuple[list[Any], list[Any]]:
        """Per-attempt USD (call + gate + price of latency) and seconds, one entry per tier.

        Works on floats (one task) and on arrays (many tasks) alike.
        """
        gate = self.catalog.gate_cost(output)
        gate_s = self.catalog.gate_latency_s()
        price = self.settings.latency_price_per_s
        cost, latency = [], []
        for name in self.catalog.ladder:
            tier = self.catalog.tiers[name]
            seconds = tier.call_latency_s(output) + gate_s
            latency.append(seconds)
            cost.append(tier.call_cost(prompt_total, output) + gate + price * seconds)
        return cost, latency

    QUANTITIES = ("cost", "latency_s", "calls", "premium_calls", "pass", "bad")

    def expectations(self, p_first: Sequence[Any], cost: Sequence[Any],
                     latency: Sequence[Any], false_pass: Sequence[Any] | None = None,
                     quantities: Sequence[str] = QUANTITIES) -> dict[str, list[Any]]:
        """Dynamic programme over (tier, retry) states, from each start tier.

        Inputs and outputs are one entry per ladder tier, each a float (one task: plain
        Python arithmetic, a few microseconds) or an array (many tasks: vectorised).
        `false_pass[t]`: P(truly failing | the gate accepted) at tier t. "bad" is the chance
        that the final output is truly failing: accepted wrongly, or flagged for review.
        `quantities`: which of QUANTITIES to compute (a decision needs cost and bad only).
        """
        L = len(p_first)
        per_attempt = {"cost": cost, "latency_s": latency, "calls": [1.0] * L,
                       "premium_calls": [0.0] * (L - 1) + [1.0], "pass": [1.0] * L,
                       "bad": [0.0] * L if false_pass is None else false_pass}
        flag = [1.0 if q == "bad" else 0.0 for q in quantities]
        on_pass = [1.0 if q in ("pass", "bad") else 0.0 for q in quantities]
        shapes = [x.shape for x in chain(p_first, cost, latency, false_pass or ())
                  if isinstance(x, np.ndarray) and x.ndim]
        if not shapes:  # one task: one programme per quantity on plain floats
            return {q: self._programme(p_first, per_attempt[q], flag[i], on_pass[i])
                    for i, q in enumerate(quantities)}
        # Many tasks: all quantities in one programme, each row of a (quantities, tasks)
        # array doing exactly the arithmetic of its own programme.
        stacked = np.empty((L, len(quantities), *np.broadcast_shapes(*shapes)))
        for i, q in enumerate(quantities):
            for t in range(L):
                stacked[t, i] = per_attempt[q][t]
        values = self._programme(p_first, list(stacked), np.array(flag)[:, None],
                                 np.array(on_pass)[:, None])
        return {q: [v[i] for v in values] for i, q in enumerate(quantities)}

    def _programme(self, p_first: Sequence[Any], now: Sequence[Any], flag: Any, on_pass: Any
                   ) -> list[Any]:
        """A quantity's values from each start tier. An attempt adds `now[t]`, times its
        pass probability when `on_pass` is 1 ("pass" and "bad" count only on a pass; with 0
        the factor is exactly 1.0); a flagged field at the top of the ladder adds `flag`.
        Tiers are solved top down, each tier's retry states from the last retry back, so
        only each tier's first-attempt value is kept. Floats for one quantity of one task,
        or arrays with one row per quantity."""
        R = self.catalog.gate.retries_per_tier
        top = len(p_first) - 1
        first: list[Any] = [0.0] * (top + 1)  # the value of a first attempt at each tier
        for t in range(top, -1, -1):
            fs, fv, fm, retry_pass = self.tier_constants[t]
            escalate = flag if t == top else first[t + 1]
            # A failed attempt below the top: a schema error escalates, a severe miss jumps
            # to the top, a near miss retries (fm x the next state's value, added below).
            jumps = 0.0 if t == top else fs * escalate + fv * first[top]
            retry_gain = (retry_pass * on_pass + (1.0 - on_pass)) * now[t]
            value = escalate  # what follows the last retry: escalate, or the flag at the top
            for k in range(R, -1, -1):
                p = p_first[t] if k == 0 else retry_pass
                gain = (p * on_pass + (1.0 - on_pass)) * now[t] if k == 0 else retry_gain
                after = value if t == top else jumps + fm * value
                value = gain + (1.0 - p) * after
            first[t] = value
        return first


class RoutingPolicy:
    """Start-tier decisions, learned when a model is loaded, from the rules otherwise."""

    def __init__(self, catalog: Catalog, settings: PolicySettings,
                 artifact: RouterArtifact | None = None, fallback_reason: str | None = None,
                 seed: int | None = None,
                 predictor: Callable[[pd.DataFrame], np.ndarray] | None = None,
                 calibration_key: str = "policy") -> None:
        self.catalog = catalog
        calibrated = artifact.manifest.get(calibration_key, {}) if artifact else {}
        if settings.lam is None:
            settings = replace(settings, lam=float(calibrated.get("lam", DEFAULT_LAM)))
        if settings.knob is None:
            settings = replace(settings, knob=float(calibrated.get("knob", DEFAULT_KNOB)))
        self.settings = settings
        self.artifact = artifact
        self.predictor = predictor
        self.calibration_key = calibration_key
        self.fallback_reason = fallback_reason or (None if artifact else "no_model")
        stats = artifact.manifest.get("ladder_stats", {}) if artifact else {}
        self.cost_model = LadderCostModel(catalog, settings, stats)
        self.rng = np.random.default_rng(seed)
        self.ladder = catalog.ladder
        self._impact = {name: f.impact for name, f in catalog.fields.items()}
        self._static = {name: catalog.ladder.index(f.static_tier)
                        for name, f in catalog.fields.items() if f.static_tier in catalog.ladder}
        self._median_output = stats.get("median_output_tokens", {})
        errors = stats.get("gate_errors", {})
        self._false_pass = _false_pass_table(errors, catalog, settings.false_pass_rate)
        self._false_pass_model = (errors.get("model") if settings.false_pass_rate is None
                                  else None)
        spec = artifact.model.spec if artifact else None
        self._wanted = list(dict.fromkeys([*ROUTING_KEYS, *(spec.wanted if spec else [])]))
        # Per tier: what its decision records show (model, provider, URL, the ladder from it).
        self._tier_records = {
            name: (tier.model_id, tier.provider, tier.base_url,
                   self.ladder[self.ladder.index(name):] if name in self.ladder else [name])
            for name, tier in catalog.tiers.items()}
        self._impact_terms: dict[float, tuple[float, float]] = {}  # see _impact_terms_of
        # Decisions' plans in C, when it applies (compiled trees, no lookup predictor).
        self._planner = build_planner(
            artifact.model if artifact and predictor is None else None, catalog, settings,
            self.cost_model.tier_constants, self._false_pass_model)

    @classmethod
    def from_artifact_path(cls, catalog: Catalog, settings: PolicySettings,
                           path: str | None, seed: int | None = None,
                           compiled_cache: str | None = None) -> RoutingPolicy:
        """Load the artifact at `path`; on any failure serve the rules and say why.
        With `compiled_cache`, its trees are compiled (cached in its compiled/) for speed."""
        if not path:
            return cls(catalog, settings, None, "no_model", seed)
        try:
            artifact = load_artifact(path)
        except (ArtifactError, FileNotFoundError) as exc:
            return cls(catalog, settings, None, f"artifact_error: {exc}", seed)
        compile_model(artifact.model, compiled_cache)
        return cls(catalog, settings, artifact, None, seed)

    @property
    def learned(self) -> bool:
        return self.artifact is not None

    @property
    def router_version(self) -> str:
        return self.artifact.router_version if self.artifact else RULES_VERSION

    def variant(self, key: str, **changes: Any) -> RoutingPolicy:
        """One of POLICY_VARIANTS on this policy's artifact, its dial read from `key`."""
        if key not in POLICY_VARIANTS:
            raise ValueError(f"unknown policy variant {key!r}; known: {sorted(POLICY_VARIANTS)}")
        rule, lookup = POLICY_VARIANTS[key]
        predictor = None
        if lookup:
            if not self.artifact or "lookup" not in self.artifact.manifest:
                raise ValueError("this artifact has no lookup table; retrain with router-train")
            predictor = LookupTable(self.artifact.manifest["lookup"], self.ladder)
            changes.setdefault("impact_slope", 0.0)  # the plain table rule: one threshold
        base = replace(self.settings, lam=None, knob=None) if key != self.calibration_key \
            else self.settings
        return RoutingPolicy(self.catalog, replace(base, rule=rule, **changes), self.artifact,
                             self.fallback_reason, predictor=predictor, calibration_key=key)

    def with_settings(self, **changes: Any) -> RoutingPolicy:
        """The same model under other settings (e.g. another lam), sharing the artifact."""
        settings = replace(self.settings, **changes)
        policy = RoutingPolicy(self.catalog, settings, self.artifact, self.fallback_reason,
                               predictor=self.predictor, calibration_key=self.calibration_key)
        policy.rng = self.rng
        return policy

    # ---- the vectorised core shared by serving and evaluation -------------------------

    def required_pass_prob(self, impact: Any) -> Any:
        s = self.settings
        return min(max(s.knob + s.impact_slope * (impact - 5.0), 0.0), 0.999) \
            if isinstance(impact, float | int) else \
            _clip(s.knob + s.impact_slope * (impact - 5.0), 0.0, 0.999)

    def impact_weight(self, impact: Any) -> Any:
        """w(field): the configured weight of the field's impact score (1..10)."""
        weights = self.settings.impact_weights
        if isinstance(impact, float | int):
            return float(weights[min(max(int(impact), 1), 10) - 1])
        idx = _clip(np.asarray(impact, dtype=np.int64), 1, 10) - 1
        return np.asarray(weights, dtype=float)[idx]

    def false_pass(self, fields: str | Fields | Sequence[str], p: Sequence[Any]) -> list[Any]:
        """Per ladder tier, P(truly failing | the gate accepted) for each task.

        With the audit's model (`gate_errors.model`): a logistic function of the tier and
        the task's predicted pass probability there, so a hard task accepted on a cheap tier
        is more likely a false pass; otherwise the audit's rate by field and tier."""
        fitted = self._false_pass_model
        if fitted is not None:
            slope = fitted["slope"]
            intercept = [fitted["intercept"].get(t, 0.0) for t in self.ladder]
            if isinstance(p[0], float):  # one task
                return [_sigmoid(c + slope * _logit(x)) for c, x in zip(intercept, p,
                                                                         strict=True)]
            # Many tasks: all tiers in one pass over a (tasks, tiers) array, element by
            # element the same operations as one tier at a time.
            rates = _sigmoid(np.array(intercept) + slope * _logit(np.stack(p, axis=1)))
            return list(rates.T)
        by_tier, by_field = self._false_pass
        if isinstance(fields, str):
            return [by_field[t].get(fields, by_tier[t]) for t in self.ladder]
        fields = Fields.of(fields)
        return [fields.lookup(by_field[t], by_tier[t]) for t in self.ladder]

    def starts_for(self, plan: Mapping[str, np.ndarray]) -> np.ndarray:
        """Start tiers chosen again from a plan's (n, L) expectations under this policy's
        settings: a dial sweep without predicting or running the ladder model again. The
        same choice as `plan_columns`, tier by tier (first tier on ties, premium when
        nothing qualifies); a column at a time beats numpy's argmin along a short axis."""
        eligible = np.asarray(plan["eligible"], dtype=bool)
        cost = plan["expected_cost"]
        n, top = len(cost), cost.shape[1] - 1
        threshold_rule = self.settings.rule == "threshold"
        if threshold_rule:
            required = self.required_pass_prob(plan["impact"])
        else:
            price = self.settings.lam * self.impact_weight(plan["impact"])
        start, best = np.full(n, top), np.full(n, np.inf)
        for t in range(top + 1):
            ok = eligible[:, t]
            if threshold_rule:
                ok = ok if t == top else ok & (plan["p"][:, t] >= required)
                loss = cost[:, t]
            else:
                loss = cost[:, t] + price * plan["expected_bad"][:, t]
            better = ok & (loss < best)
            best = np.where(better, loss, best)
            start = np.where(better, t, start)
        return start

    def plan(self, p: np.ndarray, impact: np.ndarray, prompt_total: np.ndarray,
             output: np.ndarray, fields: Fields | Sequence[str],
             quantities: Sequence[str] = LadderCostModel.QUANTITIES
             ) -> dict[str, np.ndarray]:
        """Start tier (ladder index) for each task, with the numbers behind it.

        Arrays in, (n,) / (n, L) arrays out; the work is done by `plan_columns`.
        """
        cols = self.plan_columns(list(p.T), impact, prompt_total, output,
                                 self.false_pass(fields, list(p.T)), quantities)
        out = {"start": np.asarray(cols.pop("start"), dtype=np.int64),
               "required": np.asarray(cols.pop("required"), dtype=float)}
        return out | {k: np.column_stack(np.broadcast_arrays(*v)) for k, v in cols.items()}

    def plan_columns(self, p: Sequence[Any], impact: Any, prompt_total: Any, output: Any,
                     false_pass: Sequence[Any],
                     quantities: Sequence[str] = LadderCostModel.QUANTITIES
                     ) -> dict[str, Any]:
        """The plan on per-tier columns: floats for one task, arrays for many.

        `expected_loss`: the least cost + lam x w(field) x P(bad outcome) among tiers that
        fit the context window. `threshold`: the cheapest expected cost among tiers that fit
        and meet the field's required pass probability; premium always qualifies.
        `quantities` must include cost and bad (what the choice uses).
        """
        cost, latency = self.cost_model.attempt_cost(prompt_total, output)
        expected = self.cost_model.expectations(p, cost, latency, false_pass, quantities)
        required = self.required_pass_prob(impact)
        threshold_rule = self.settings.rule == "threshold"
        price = self.settings.lam * self.impact_weight(impact)
        top = len(self.ladder) - 1
        start: Any = top
        best: Any = np.inf
        eligible = self.eligible(prompt_total, output)
        for t, fits in enumerate(eligible):
            if threshold_rule:
                ok = fits if t == top else fits & (p[t] >= required)
                loss = expected["cost"][t]
            else:
                ok, loss = fits, expected["cost"][t] + price * expected["bad"][t]
            if isinstance(loss, float):  # one task (a float, even numpy's): plain comparisons
                if ok and loss < best:
                    best, start = loss, t
                continue
            better = ok & (loss < best)
            best = np.where(better, loss, best)
            start = np.where(better, t, start)
        return {"start": start, "required": required, "eligible": eligible,
                **{f"expected_{k}": v for k, v in expected.items()}}

    def eligible(self, prompt_total: Any, output: Any) -> list[Any]:
        """Per ladder tier: does the task fit the tier's context window? (floats or arrays)"""
        return [prompt_total + output <= self.catalog.tiers[t].context_window
                for t in self.ladder]

    def start_tiers(self, tasks: pd.DataFrame, p: np.ndarray | None = None,
                    quantities: Sequence[str] = LadderCostModel.QUANTITIES
                    ) -> dict[str, np.ndarray]:
        """Evaluation entry point: a frame of tasks (flat columns) -> plan arrays.

        Pass `p` (from an earlier call) to re-plan under other settings without predicting
        again; `quantities`: the expectations to plan (a start needs only cost and bad).
        The replay sends overflow tasks to the overflow tier whatever the start; without a
        model the start is the static assignment.
        """
        n = len(tasks)
        fields = Fields.of(tasks["field"])
        impact = fields.lookup(self._impact, 5)
        prompt_total = (tasks["prompt_tokens"] + tasks["context_tokens"]).to_numpy(float)
        median = fields.lookup(self._median_output, self.settings.default_output_tokens)
        given = pd.to_numeric(tasks.get("expected_output_tokens", pd.Series(np.nan, tasks.index)),
                              errors="coerce").to_numpy(float)
        output = np.where(np.isnan(given), median, given)
        if not self.learned:
            return {"start": self.static_starts(tasks["field"]),
                    "p": np.full((n, len(self.ladder)), np.nan)}
        if p is None:
            p = self._predict_tiers(tasks.assign(expected_output_tokens=output))
        return {"p": p, "impact": impact,
                **self.plan(p, impact, prompt_total, output, fields, quantities)}

    def _predict_tiers(self, tasks: pd.DataFrame) -> np.ndarray:
        """(n, L) pass probabilities for a frame of tasks (the model's, or the predictor's)."""
        if self.predictor is not None:
            return self.predictor(tasks)
        X = self.artifact.model.spec.encode(tasks.drop(columns="tier", errors="ignore"))
        return self._predict_encoded(X)

    def _predict_encoded(self, X_tasks: np.ndarray) -> np.ndarray:
        return self.artifact.model.predict_tiers(X_tasks, self.ladder)

    def static_starts(self, fields: pd.Series | Sequence[str]) -> np.ndarray:
        """The seed's static assignment as ladder indices (cheapest for unknown fields)."""
        return Fields.of(fields).lookup(self._static, 0).astype(np.int64)

    def _output_tokens(self, fields: Sequence[Any], given: Sequence[float]) -> list[float]:
        """Expected completion tokens: as given, else the field's logged median."""
        default = [self._median_output.get(str(f), self.settings.default_output_tokens)
                   for f in fields]
        return [float(d if g != g else g)  # g != g: NaN
                for g, d in zip(given, default, strict=True)]

    # ---- serving entry points ---------------------------------------------------------

    def decide(self, task: Mapping[str, Any]) -> Decision:
        return self.decide_many([task])[0]

    def decide_many(self, tasks: Sequence[Mapping[str, Any]],
                    starts: np.ndarray | None = None, router: str | None = None
                    ) -> list[Decision]:
        """One decision per task. Invalid features fall back to the rules, with the reason.

        `starts` (ladder indices from another registered router) replaces the learned start;
        the model's probabilities are still reported when there is a model. Per-task values
        travel as Python lists: numpy pays only where it works on many tasks at once.
        """
        n = len(tasks)
        if n == 0:
            return []
        # One task: a walk over its keys; many: one list per key (far fewer Python steps).
        flat = flatten_task(tasks[0]) if n == 1 else None
        columns = ({c: [flat.get(c)] for c in ROUTING_KEYS} if flat is not None
                   else task_columns(tasks, self._wanted))
        fields = [str(f) for f in columns["field"]]
        impact = [float(self._impact.get(f, 5)) for f in fields]
        prompt_total = [a + b for a, b in zip(_token_list(columns["prompt_tokens"]),
                                              _token_list(columns["context_tokens"]),
                                              strict=True)]
        output = self._output_tokens(fields, _token_list(columns["expected_output_tokens"],
                                                         np.nan))
        plan = gaps = None
        reason = self.fallback_reason
        if self.learned:
            try:
                X, gaps = self._encode(tasks, flat, columns, output)
                plan = (self._plan_compiled(X, fields, impact, prompt_total, output)
                        if self._planner is not None else
                        self._plan_tasks(self._predict_encoded(X), fields, impact,
                                         prompt_total, output))
            except FeatureError as exc:
                reason = f"invalid_features: {exc}"
        chosen = self._starts(fields, plan, starts, n)
        shown = self._shown(plan, n)
        if gaps is None:
            gaps = [self._gaps(t, out) for t, out in zip(tasks, output, strict=True)]
        overflow = self.catalog.gate.context_overflow_tokens
        ids, version = decision_ids(n), self.router_version
        return [self._one(ids[i], version, fields[i], gaps[i], shown[i], reason,
                          prompt_total[i] > overflow, chosen[i], router) for i in range(n)]

    def _encode(self, tasks: Sequence[Mapping[str, Any]], flat: dict[str, Any] | None,
                columns: dict[str, list[Any]], output: list[float]
                ) -> tuple[np.ndarray, list[tuple[dict[str, str], list[str]]]]:
        """The model's rows and each task's gaps. The model sees the expected output as
        given, or (when absent) the one planned with."""
        spec = self.artifact.model.spec
        if flat is not None:
            flat.setdefault("expected_output_tokens", output[0])
            return spec.encode_with_gaps([flat])
        columns["expected_output_tokens"] = [
            t.get("expected_output_tokens", out) for t, out in zip(tasks, output, strict=True)]
        return spec.encode_columns(columns, len(tasks))

    def _gaps(self, task: Mapping[str, Any], output: float
              ) -> tuple[dict[str, str], list[str]]:
        """(unknown categories, missing features) when the encoder did not report them;
        an absent expected output counts as the one planned with."""
        spec = self.artifact.model.spec if self.artifact else None
        if spec is None:
            return {}, []
        flat = flatten_task(task)
        flat.setdefault("expected_output_tokens", output)
        return spec.unknowns(flat), spec.missing(flat)

    DECISION_QUANTITIES = ("cost", "bad")  # what a start choice and its record use

    def _plan_tasks(self, p: np.ndarray, fields: list[str], impact: list[float],
                    prompt_total: list[float], output: list[float]) -> dict[str, Any]:
        """The plan for a decision: on floats for one task (far cheaper than numpy there),
        on arrays for many; `p_rows` keeps each task's probabilities as floats."""
        if len(fields) == 1:
            p0 = p[0].tolist()
            plan = self.plan_columns(p0, impact[0], prompt_total[0], output[0],
                                     self.false_pass(fields[0], p0), self.DECISION_QUANTITIES)
        else:
            columns = list(p.T)
            plan = self.plan_columns(columns, np.array(impact), np.array(prompt_total),
                                     np.array(output),
                                     self.false_pass(fields, columns),
                                     self.DECISION_QUANTITIES)
        return {**plan, "p_rows": p.tolist()}

    def _plan_compiled(self, X: np.ndarray, fields: list[str], impact: list[float],
                       prompt_total: list[float], output: list[float]) -> dict[str, Any]:
        """`_plan_tasks` by the compiled planner: the same numbers (tested). Without the
        audit's false-pass model the planner takes the audit's rates by field and tier."""
        table = self._false_pass_model is None
        if len(fields) == 1:
            price, required = self._impact_terms_of(impact[0])
            start, p, cost, eligible = self._planner.plan(
                X, prompt_total[0], output[0], self.false_pass(fields[0], []) if table
                else None, price, required)
            return {"start": start, "p_rows": [p], "expected_cost": cost,
                    "eligible": eligible, "required": required}
        terms = [self._impact_terms_of(i) for i in impact]
        required = [t[1] for t in terms]
        start, p_rows, cost, eligible = self._planner.plan_many(
            X, prompt_total, output, [self.false_pass(f, []) for f in fields] if table
            else None, [t[0] for t in terms], required)
        return {"start": start, "p_rows": p_rows, "expected_cost": cost,
                "eligible": eligible, "required": required}

    def _impact_terms_of(self, impact: float) -> tuple[float, float]:
        """lam x w(field) and the required pass probability, worked out once per score."""
        terms = self._impact_terms.get(impact)
        if terms is None:
            terms = self._impact_terms[impact] = (
                self.settings.lam * self.impact_weight(impact), self.required_pass_prob(impact))
        return terms

    def _shown(self, plan: dict[str, Any] | None, n: int) -> list[dict[str, Any]]:
        """Per task, what the record shows of the plan: probabilities, expected costs and
        (threshold rule) the required pass probability."""
        if plan is None:
            return [{}] * n
        ladder = self.ladder
        costs = (np.column_stack(np.broadcast_arrays(*plan["expected_cost"])).tolist()
                 if n > 1 else [[float(c) for c in plan["expected_cost"]]])
        shown = [{"pass_probabilities": dict(zip(ladder, p, strict=True)),
                  "expected_costs": dict(zip(ladder, c, strict=True))}
                 for p, c in zip(plan["p_rows"], costs, strict=True)]
        if self.settings.rule == "threshold":
            required = np.broadcast_to(plan["required"], (n,)).tolist()
            for extras, r in zip(shown, required, strict=True):
                extras["required_pass_prob"] = float(r)
        return shown

    def _starts(self, fields: list[str], plan: dict[str, Any] | None,
                forced: np.ndarray | None, n: int) -> list[tuple[int, str, float]]:
        """(start index, source, propensity) per task: forced, learned (+ exploration), or
        the static rules."""
        if forced is not None:
            return [(int(s), "rules", 1.0) for s in forced]
        if plan is None:
            return [(self._static.get(f, 0), "rules", 1.0) for f in fields]
        greedy = [int(plan["start"])] if n == 1 else np.broadcast_to(
            np.asarray(plan["start"], dtype=np.int64), (n,)).tolist()
        eps = self.settings.epsilon
        if eps == 0:
            return [(g, "learned", 1.0) for g in greedy]
        eligible = np.column_stack([np.broadcast_to(np.asarray(e, bool), (n,))
                                    for e in plan["eligible"]])
        start, explored, propensity = explore(np.array(greedy), eligible, eps, self.rng)
        return [(s, "exploration" if x else "learned", q) for s, x, q in
                zip(start.tolist(), explored.tolist(), propensity.tolist(), strict=True)]

    def _one(self, decision_id: str, router_version: str, field_name: str,
             gaps: tuple[dict[str, str], list[str]], shown: dict[str, Any],
             reason: str | None, overflow: bool, chosen: tuple[int, str, float],
             router: str | None) -> Decision:
        unknown, missing = gaps
        if field_name not in self._impact:
            unknown.setdefault("field", field_name)
        if overflow:
            start_tier, source, propensity, fallback = (
                self.catalog.gate.overflow_tier, "rules", 1.0, "context_overflow")
        else:
            start, source, propensity = chosen
            start_tier = self.ladder[start]
            fallback = reason if source == "rules" and router is None else None
        model, provider, base_url, ladder = self._tier_records[start_tier]
        return Decision(decision_id=decision_id, router_version=router_version,
                        start_tier=start_tier, model=model, provider=provider,
                        base_url=base_url, source=source, propensity=float(propensity),
                        ladder=list(ladder), fallback_reason=fallback,
                        unknown_categories=unknown, router=router, missing_features=missing,
                        **shown)


def _false_pass_table(errors: Mapping[str, Any], catalog: Catalog, override: float | None
                      ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """P(truly failing | accepted) by tier, and by tier -> field where the audit had enough
    accepted attempts; `override` (router.policy.false_pass_rate) replaces them all."""
    if override is not None:
        return {t: float(override) for t in catalog.ladder}, {t: {} for t in catalog.ladder}
    by_tier = {t: float(errors.get("tier", {}).get(t, 0.0)) for t in catalog.ladder}
    by_field: dict[str, dict[str, float]] = {t: {} for t in catalog.ladder}
    for f, rates in errors.get("field_tier", {}).items():
        for t, rate in rates.items():
            if t in by_field:
                by_field[t][f] = float(rate)
    return by_tier, by_field


def _logit(p: Any) -> Any:
    if isinstance(p, float):
        p = min(max(p, 1e-6), 1 - 1e-6)
        return math.log(p / (1.0 - p))
    p = _clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1.0 - p))


def _clip(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """`np.clip` (same values, NaN stays NaN) without its Python wrapper, which costs more
    than the clipping on a batch of tasks."""
    return np.minimum(np.maximum(x, low), high)


def _sigmoid(z: Any) -> Any:
    if isinstance(z, float):
        return 1.0 / (1.0 + math.exp(-z))
    return 1.0 / (1.0 + np.exp(-z))


def _token_list(values: Sequence[Any], missing: float = 0.0) -> list[float]:
    """`_tokens` of each value; plain ints and floats (nearly all) without a call each."""
    return [float(v) if type(v) is int or type(v) is float else _tokens(v, missing)
            for v in values]


def _tokens(value: Any, missing: float = 0.0) -> float:
    """A token count for routing arithmetic; non-numbers count as `missing` (the encoder
    reports them as invalid features)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return missing
    return float(value)
