"""The routing policy: pick each task's start tier; the rule ladder takes over from there.

For every eligible ladder tier the calibrated model gives the probability that the first
attempt passes the gate; `StartChoice` (`choice.py`) turns those into a start tier under the
policy's settings, and the ladder takes over. Without a model, an artifact that fails to
load, or invalid features, the seed's static assignment (`rules.py`) decides and the
decision says why. Serving and offline evaluation both go through `RoutingPolicy`, so what
is evaluated is what is served.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from router_model.config import Catalog
from router_model.contract import Decision
from router_model.decide.choice import StartChoice
from router_model.decide.ladder_cost import LadderCostModel
from router_model.decide.planner import build_planner
from router_model.decide.rules import RULES_VERSION, explore
from router_model.decide.settings import (
    POLICY_VARIANTS,
    PolicySettings,
    calibrated,
    variant_settings,
)
from router_model.logs.decision_ids import decision_ids
from router_model.model.artifact import ArtifactError, RouterArtifact, load_artifact
from router_model.model.compiled import compile_model
from router_model.model.features import FeatureError, flatten_task, task_columns
from router_model.model.lookup import LookupTable

# What a decision reads of a task besides the model's features.
ROUTING_KEYS = ("field", "prompt_tokens", "context_tokens", "expected_output_tokens")


class RoutingPolicy:
    """Start-tier decisions, learned when a model is loaded, from the rules otherwise."""

    def __init__(self, catalog: Catalog, settings: PolicySettings,
                 artifact: RouterArtifact | None = None, fallback_reason: str | None = None,
                 seed: int | None = None,
                 predictor: Callable[[pd.DataFrame], np.ndarray] | None = None,
                 calibration_key: str = "policy") -> None:
        self.catalog = catalog
        self.settings = calibrated(settings, artifact.manifest if artifact else None,
                                   calibration_key)
        self.artifact = artifact
        self.predictor = predictor
        self.calibration_key = calibration_key
        self.fallback_reason = fallback_reason or (None if artifact else "no_model")
        manifest = artifact.manifest if artifact else {}
        self.choice = StartChoice(catalog, self.settings, manifest.get("ladder_stats", {}),
                                  manifest.get("support"))
        self.rules = self.choice.rules
        self.rng = np.random.default_rng(seed)
        self.ladder = catalog.ladder
        spec = artifact.model.spec if artifact else None
        self._wanted = list(dict.fromkeys([*ROUTING_KEYS, *(spec.wanted if spec else [])]))
        # Per tier: what its decision records show (model, provider, URL, the ladder from it).
        self._tier_records = {
            name: (tier.model_id, tier.provider, tier.base_url,
                   self.ladder[self.ladder.index(name):] if name in self.ladder else [name])
            for name, tier in catalog.tiers.items()}
        # Decisions' plans in C, when it applies (compiled trees, no lookup predictor).
        self._planner = build_planner(
            artifact.model if artifact and predictor is None else None, catalog, self.settings,
            self.choice.cost_model.tier_constants, self.choice.false_pass_model)

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
        predictor = None
        if POLICY_VARIANTS[key][1]:  # on the lookup table
            if not self.artifact or "lookup" not in self.artifact.manifest:
                raise ValueError("this artifact has no lookup table; retrain with router-train")
            predictor = LookupTable(self.artifact.manifest["lookup"], self.ladder)
            changes.setdefault("impact_slope", 0.0)  # the plain table rule: one threshold
        settings = variant_settings(self.settings, self.calibration_key, key, **changes)
        return RoutingPolicy(self.catalog, settings, self.artifact, self.fallback_reason,
                             predictor=predictor, calibration_key=key)

    def with_settings(self, **changes: Any) -> RoutingPolicy:
        """The same model under other settings (e.g. a router's own lam), sharing the
        artifact and the random stream."""
        policy = RoutingPolicy(self.catalog, replace(self.settings, **changes), self.artifact,
                               self.fallback_reason, predictor=self.predictor,
                               calibration_key=self.calibration_key)
        policy.rng = self.rng
        return policy

    def start_tiers(self, tasks: pd.DataFrame, p: np.ndarray | None = None,
                    quantities: Sequence[str] = LadderCostModel.QUANTITIES
                    ) -> dict[str, np.ndarray]:
        """Evaluation entry point: a frame of tasks (flat columns) -> plan arrays.

        Pass `p` (from an earlier call) to re-plan under other settings without predicting
        again; `quantities`: the expectations to plan (a start needs only cost and bad).
        The replay sends overflow tasks to the overflow tier whatever the start; without a
        model the start is the static assignment.
        """
        if not self.learned:
            return {"start": self.rules.static_starts(tasks["field"]),
                    "p": np.full((len(tasks), len(self.ladder)), np.nan)}

        def predict(frame: pd.DataFrame, output: np.ndarray) -> np.ndarray:
            if p is not None:
                return p
            return self._predict_tiers(frame.assign(expected_output_tokens=output))

        return self.choice.plan_frame(tasks, predict, quantities)

    def _predict_tiers(self, tasks: pd.DataFrame) -> np.ndarray:
        """(n, L) pass probabilities for a frame of tasks (the model's, or the predictor's)."""
        if self.predictor is not None:
            return self.predictor(tasks)
        X = self.artifact.model.spec.encode(tasks.drop(columns="tier", errors="ignore"))
        return self._predict_encoded(X)

    def _predict_encoded(self, X_tasks: np.ndarray) -> np.ndarray:
        return self.artifact.model.predict_tiers(X_tasks, self.ladder)

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
        impact = [float(self.choice.impact.get(f, 5)) for f in fields]
        prompt_total = [a + b for a, b in zip(_token_list(columns["prompt_tokens"]),
                                              _token_list(columns["context_tokens"]),
                                              strict=True)]
        output = self.choice.output_tokens(fields, _token_list(columns["expected_output_tokens"],
                                                         np.nan))
        plan = gaps = None
        reason = self.fallback_reason
        if self.learned:
            try:
                X, gaps = self._encode(tasks, flat, columns, output)
                plan = (self._plan_compiled(X, fields, prompt_total, output)
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
        on arrays for many; `p_rows` keeps each task's probabilities (the model's, before
        the planning pessimism) as floats."""
        choice = self.choice
        if len(fields) == 1:
            p0 = choice.planning_p(p[0].tolist(), fields[0])
            plan = choice.plan_columns(p0, impact[0], prompt_total[0], output[0],
                                       choice.false_pass(fields[0], p0),
                                       self.DECISION_QUANTITIES,
                                       lam=choice.settings.lam_of(fields[0]))
        else:
            columns = list(choice.planning_p(p, fields).T)
            plan = choice.plan_columns(columns, np.array(impact), np.array(prompt_total),
                                       np.array(output), choice.false_pass(fields, columns),
                                       self.DECISION_QUANTITIES, lam=choice.lams(fields))
        return {**plan, "p_rows": p.tolist()}

    def _plan_compiled(self, X: np.ndarray, fields: list[str], prompt_total: list[float],
                       output: list[float]) -> dict[str, Any]:
        """`_plan_tasks` by the compiled planner: the same numbers (tested). Without the
        audit's false-pass model the planner takes the audit's rates by field and tier."""
        choice = self.choice
        table = choice.false_pass_model is None
        if len(fields) == 1:
            price, required = choice.terms(fields[0])
            start, p, cost, eligible = self._planner.plan(
                X, prompt_total[0], output[0], choice.false_pass(fields[0], []) if table
                else None, choice.penalty(fields[0]), price, required)
            return {"start": start, "p_rows": [p], "expected_cost": cost,
                    "eligible": eligible, "required": required}
        terms = [choice.terms(f) for f in fields]
        required = [t[1] for t in terms]
        start, p_rows, cost, eligible = self._planner.plan_many(
            X, prompt_total, output, [choice.false_pass(f, []) for f in fields] if table
            else None, [choice.penalty(f) for f in fields] if choice.penalties else None,
            [t[0] for t in terms], required)
        return {"start": start, "p_rows": p_rows, "expected_cost": cost,
                "eligible": eligible, "required": required}

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
            return [(self.rules.static.get(f, 0), "rules", 1.0) for f in fields]
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
        if field_name not in self.choice.impact:
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
