"""The routing policy: pick each task's start tier; the rule ladder takes over from there.

For every eligible ladder tier the calibrated model gives the probability that the first
attempt passes the gate. An expected-cost model of the ladder (retries, schema escalations,
severe jumps to premium, the gate's own cost, optionally a price on latency) turns those into
the expected cost of starting at each tier. The policy starts at the cheapest-in-expectation
tier whose pass probability meets the field's quality requirement:

    required(field) = knob + impact_slope x (impact - 5)        (clipped to [0, 0.999])

so high-impact fields start cheap only when the model is confident. `knob` is the one dial:
0 always takes the cheapest expected cost, 1 always starts at premium. Serving and offline
evaluation both go through `RoutingPolicy`, so what is evaluated is what is served.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from router_model.artifact import ArtifactError, RouterArtifact, load_artifact
from router_model.config import Catalog
from router_model.features import FeatureError, expand_tiers, flatten_task

RULES_VERSION = "rules-static-v1"
DEFAULT_KNOB = 0.85


@dataclass(frozen=True)
class PolicySettings:
    """`router.policy` in config."""

    knob: float | None = None  # None: the knob calibrated into the artifact (else 0.85)
    impact_slope: float = 0.02
    epsilon: float = 0.0
    latency_price_per_s: float = 0.0
    default_schema_share: float = 0.1
    default_severe_share: float = 0.05
    default_retry_pass_rate: float = 0.6
    default_output_tokens: float = 500.0

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> PolicySettings:
        known = cls.__dataclass_fields__
        unknown = sorted(set(cfg) - set(known))
        if unknown:
            raise ValueError(f"router.policy has unknown keys {unknown}; known: {sorted(known)}")
        settings = cls(**{k: None if v is None else float(v) for k, v in cfg.items()})
        if not 0.0 <= settings.epsilon <= 1.0:
            raise ValueError(f"router.policy.epsilon={settings.epsilon} must be in [0, 1]")
        return settings


@dataclass
class Decision:
    """What the generator gets back for one task, and what the decision log records."""

    decision_id: str
    router_version: str
    start_tier: str
    model: str
    provider: str
    base_url: str
    source: str  # learned | rules | exploration
    propensity: float
    ladder: list[str]
    pass_probabilities: dict[str, float] = field(default_factory=dict)
    expected_costs: dict[str, float] = field(default_factory=dict)
    required_pass_prob: float | None = None
    fallback_reason: str | None = None
    unknown_categories: dict[str, str] = field(default_factory=dict)
    missing_features: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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

    def attempt_cost(self, prompt_total: np.ndarray, output: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Per-attempt USD (call + gate + price of latency) and seconds, shape (n, L)."""
        tiers = [self.catalog.tiers[t] for t in self.catalog.ladder]
        gate = self.catalog.gate_cost(output)
        gate_s = self.catalog.gate_latency_s()
        latency = np.column_stack([t.call_latency_s(output) + gate_s for t in tiers])
        cost = np.column_stack([t.call_cost(prompt_total, output) + gate for t in tiers])
        return cost + self.settings.latency_price_per_s * latency, latency

    QUANTITIES = ("cost", "latency_s", "calls", "premium_calls", "pass")

    def expectations(self, p_first: np.ndarray, cost: np.ndarray, latency: np.ndarray
                     ) -> dict[str, np.ndarray]:
        """Dynamic programme over (tier, retry) states; every output has shape (n, L).

        All quantities move through the states together (one array of shape (Q, n)), so a
        single decision costs a handful of numpy operations per state.
        """
        n, L = p_first.shape
        R = self.catalog.gate.retries_per_tier
        top = L - 1
        per_attempt = np.stack([cost, latency, np.ones((n, L)), np.zeros((n, L)), p_first])
        per_attempt[3, :, top] = 1.0  # premium calls
        value = np.zeros((len(self.QUANTITIES), n, L, R + 1))
        for t in range(top, -1, -1):
            fs, fv = self.schema_share[t], self.severe_share[t]
            for k in range(R, -1, -1):
                now = per_attempt[:, :, t].copy()
                if k > 0:
                    now[4] = self.retry_pass[t]
                fail = 1.0 - now[4]
                if t == top:
                    after = value[:, :, t, k + 1] if k < R else 0.0
                else:
                    escalate = value[:, :, t + 1, 0]
                    retry = value[:, :, t, k + 1] if k < R else escalate
                    after = fs * escalate + fv * value[:, :, top, 0] + (1.0 - fs - fv) * retry
                value[:, :, t, k] = now + fail * after
        return dict(zip(self.QUANTITIES, value[:, :, :, 0], strict=True))


class RoutingPolicy:
    """Start-tier decisions, learned when a model is loaded, from the rules otherwise."""

    def __init__(self, catalog: Catalog, settings: PolicySettings,
                 artifact: RouterArtifact | None = None, fallback_reason: str | None = None,
                 seed: int | None = None) -> None:
        self.catalog = catalog
        if settings.knob is None:
            calibrated = (artifact.manifest.get("policy", {}).get("knob") if artifact else None)
            settings = replace(settings, knob=DEFAULT_KNOB if calibrated is None
                               else float(calibrated))
        self.settings = settings
        self.artifact = artifact
        self.fallback_reason = fallback_reason or (None if artifact else "no_model")
        self.cost_model = LadderCostModel(
            catalog, settings, artifact.manifest.get("ladder_stats") if artifact else None)
        self.rng = np.random.default_rng(seed)
        self.ladder = catalog.ladder
        self._impact = {name: f.impact for name, f in catalog.fields.items()}
        self._static = {name: catalog.ladder.index(f.static_tier)
                        for name, f in catalog.fields.items() if f.static_tier in catalog.ladder}
        self._median_output = (artifact.manifest.get("ladder_stats", {})
                               .get("median_output_tokens", {}) if artifact else {})

    @classmethod
    def from_artifact_path(cls, catalog: Catalog, settings: PolicySettings,
                           path: str | None, seed: int | None = None) -> RoutingPolicy:
        """Load the artifact at `path`; on any failure serve the rules and say why."""
        if not path:
            return cls(catalog, settings, None, "no_model", seed)
        try:
            return cls(catalog, settings, load_artifact(path), None, seed)
        except (ArtifactError, FileNotFoundError) as exc:
            return cls(catalog, settings, None, f"artifact_error: {exc}", seed)

    @property
    def learned(self) -> bool:
        return self.artifact is not None

    @property
    def router_version(self) -> str:
        return self.artifact.router_version if self.artifact else RULES_VERSION

    def with_settings(self, **changes: float) -> RoutingPolicy:
        """The same model under other settings (e.g. another knob), sharing the artifact."""
        settings = replace(self.settings, **changes)
        policy = RoutingPolicy(self.catalog, settings, self.artifact, self.fallback_reason)
        policy.rng = self.rng
        return policy

    # ---- the vectorised core shared by serving and evaluation -------------------------

    def required_pass_prob(self, impact: np.ndarray) -> np.ndarray:
        s = self.settings
        return np.clip(s.knob + s.impact_slope * (impact - 5.0), 0.0, 0.999)

    def plan(self, p: np.ndarray, impact: np.ndarray, prompt_total: np.ndarray,
             output: np.ndarray) -> dict[str, np.ndarray]:
        """Greedy start tier (ladder index) for each task, with the numbers behind it."""
        cost, latency = self.cost_model.attempt_cost(prompt_total, output)
        expected = self.cost_model.expectations(p, cost, latency)
        windows = np.array([self.catalog.tiers[t].context_window for t in self.ladder])
        eligible = (prompt_total + output)[:, None] <= windows[None, :]
        required = self.required_pass_prob(impact)
        ok = eligible & (p >= required[:, None])
        ok[:, -1] |= eligible[:, -1]  # premium is always allowed when it fits
        masked = np.where(ok, expected["cost"], np.inf)
        start = np.argmin(masked, axis=1)
        none_fit = ~ok.any(axis=1)
        start[none_fit] = len(self.ladder) - 1
        return {"start": start, "required": required, "eligible": eligible, **{
            f"expected_{k}": v for k, v in expected.items()}}

    def start_tiers(self, tasks: pd.DataFrame, p: np.ndarray | None = None
                    ) -> dict[str, np.ndarray]:
        """Evaluation entry point: a frame of tasks (flat columns) -> plan arrays.

        Pass `p` (from an earlier call) to re-plan under other settings without predicting
        again. The replay sends overflow tasks to the overflow tier whatever the start;
        without a model the start is the static assignment.
        """
        n = len(tasks)
        impact = tasks["field"].map(self._impact).fillna(5).to_numpy(float)
        prompt_total = (tasks["prompt_tokens"] + tasks["context_tokens"]).to_numpy(float)
        given = tasks.get("expected_output_tokens")
        output = self._output_tokens(
            tasks["field"].to_numpy(),
            None if given is None else pd.to_numeric(given, errors="coerce").to_numpy(float))
        if not self.learned:
            return {"start": self.static_starts(tasks["field"]),
                    "p": np.full((n, len(self.ladder)), np.nan)}
        if p is None:
            p = self._predict_tiers(tasks.assign(expected_output_tokens=output))
        return {"p": p, **self.plan(p, impact, prompt_total, output)}

    def _predict_tiers(self, tasks: pd.DataFrame) -> np.ndarray:
        """(n, L) pass probabilities: encode each task once, then vary only the tier code."""
        model = self.artifact.model
        spec = model.spec
        X = np.repeat(spec.encode(tasks.drop(columns="tier", errors="ignore")),
                      len(self.ladder), axis=0)
        tier_col = spec.columns.index("tier")
        codes = [spec.categories_["tier"].index(t) if t in spec.categories_["tier"] else np.nan
                 for t in self.ladder]
        X[:, tier_col] = np.tile(codes, len(tasks))
        return model.predict_matrix(X).reshape(len(tasks), len(self.ladder))

    def static_starts(self, fields: pd.Series) -> np.ndarray:
        """The seed's static assignment as ladder indices (cheapest for unknown fields)."""
        return fields.map(self._static).fillna(0).to_numpy(np.int64)

    def _output_tokens(self, fields: Sequence[Any], given: Sequence[float] | None
                       ) -> np.ndarray:
        """Expected completion tokens: as given, else the field's logged median."""
        default = [self._median_output.get(str(f), self.settings.default_output_tokens)
                   for f in fields]
        if given is None:
            return np.array(default, dtype=float)
        return np.array([d if g != g else g for g, d in zip(given, default, strict=True)],
                        dtype=float)  # g != g: NaN

    # ---- serving entry points ---------------------------------------------------------

    def decide(self, task: Mapping[str, Any]) -> Decision:
        return self.decide_many([task])[0]

    def decide_many(self, tasks: Sequence[Mapping[str, Any]]) -> list[Decision]:
        """One decision per task. Invalid features fall back to the rules, with the reason."""
        flat = [flatten_task(t) for t in tasks]
        n = len(flat)
        if n == 0:
            return []
        fields = np.array([str(t.get("field")) for t in flat], dtype=object)
        impact = np.array([self._impact.get(f, 5) for f in fields], dtype=float)
        prompt_total = np.array([_tokens(t.get("prompt_tokens")) + _tokens(t.get(
            "context_tokens")) for t in flat])
        output = self._output_tokens(fields, [_tokens(t.get("expected_output_tokens"), np.nan)
                                              for t in flat])
        for t, out in zip(flat, output, strict=True):
            t.setdefault("expected_output_tokens", out)
        p = plan = None
        reason = self.fallback_reason
        if self.learned:
            try:
                model = self.artifact.model
                X = model.spec.encode_records(expand_tiers(flat, self.ladder))
                p = model.predict_matrix(X).reshape(n, len(self.ladder))
                plan = self.plan(p, impact, prompt_total, output)
            except FeatureError as exc:
                reason = f"invalid_features: {exc}"
        overflow = prompt_total > self.catalog.gate.context_overflow_tokens
        return [self._one(flat[i], fields[i], i, p, plan, reason, bool(overflow[i]))
                for i in range(n)]

    def _one(self, task: dict[str, Any], field_name: str, i: int, p: np.ndarray | None,
             plan: dict[str, np.ndarray] | None, reason: str | None, overflow: bool
             ) -> Decision:
        ladder = self.ladder
        spec = self.artifact.model.spec if self.artifact else None
        unknown = spec.unknowns(task) if spec else {}
        if field_name not in self._impact:
            unknown.setdefault("field", field_name)
        extras: dict[str, Any] = {"unknown_categories": unknown,
                                  "missing_features": spec.missing(task) if spec else []}
        if p is not None and plan is not None:
            extras["pass_probabilities"] = dict(zip(ladder, map(float, p[i]), strict=True))
            extras["expected_costs"] = dict(zip(ladder, map(float, plan["expected_cost"][i]),
                                                strict=True))
            extras["required_pass_prob"] = float(plan["required"][i])
        if overflow:
            return self._record(self.catalog.gate.overflow_tier, "rules", 1.0,
                                "context_overflow", **extras)
        if plan is None:
            start = self._static.get(field_name, 0)
            return self._record(ladder[start], "rules", 1.0, reason, **extras)
        greedy = int(plan["start"][i])
        eligible = np.flatnonzero(plan["eligible"][i])
        eps = self.settings.epsilon
        if eps > 0 and len(eligible) > 1 and self.rng.random() < eps:
            start = int(self.rng.choice(eligible))
            propensity = (1 - eps) * (start == greedy) + eps / len(eligible)
            return self._record(ladder[start], "exploration", propensity, None, **extras)
        propensity = (1 - eps) + eps / len(eligible) if eps > 0 and len(eligible) > 1 else 1.0
        return self._record(ladder[greedy], "learned", propensity, None, **extras)

    def _record(self, start_tier: str, source: str, propensity: float,
                fallback_reason: str | None, **extras: Any) -> Decision:
        tier = self.catalog.tiers[start_tier]
        if start_tier in self.ladder:
            ladder = self.ladder[self.ladder.index(start_tier):]
        else:
            ladder = [start_tier]
        return Decision(decision_id=uuid.uuid4().hex, router_version=self.router_version,
                        start_tier=start_tier, model=tier.model_id, provider=tier.provider,
                        base_url=tier.base_url, source=source, propensity=float(propensity),
                        ladder=ladder, fallback_reason=fallback_reason, **extras)


def _tokens(value: Any, missing: float = 0.0) -> float:
    """A token count for routing arithmetic; non-numbers count as `missing` (the encoder
    reports them as invalid features)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return missing
    return float(value)
