"""From per-tier pass probabilities to a start tier: prices, false passes, the choice.

Given each ladder tier's probability that a task's first attempt passes, the ladder's cost
model (`ladder_cost`) gives the expected cost and the probability of a bad final outcome
(accepted but truly failing, or flagged) of starting at each tier. The expected-loss rule
starts where

    loss(s) = E[cost | s] + lam x w(field) x E[bad outcome | s]

is least; a field with a quality floor (conf/fields) plans with its own, larger lam when
the floor needs it. The older threshold rule starts at the cheapest expected cost among
tiers whose pass probability reaches knob + impact_slope x (impact - 5). `StartChoice`
holds what both need (settings, per-field tables, the audit's false-pass estimates) and
plans one task on floats or many on arrays, the same arithmetic either way; the compiled
planner restates it in C for serving.

Planning is pessimistic where the logs are thin (offline policy learning's rule: act on a
lower confidence bound where the data cannot vouch for an estimate): each pass
probability is lowered by `pessimism` standard errors of its (field, tier) cell,
sqrt(p (1 - p) / (n + 1)) with n the cell's training examples. A field the seed's rules
never start on a cheap tier has few such examples (exploration only), and there the model
extrapolates from other fields.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from router_model.config import Catalog
from router_model.decide.ladder_cost import LadderCostModel
from router_model.decide.rules import Fields, StaticRules
from router_model.decide.settings import PolicySettings


def cheapest_start(losses: Sequence[Any], allowed: Sequence[Any]) -> Any:
    """The tier of least loss among the allowed ones (the first on ties, the top tier when
    none is allowed): the one tier-choice loop. Floats for one task (plain comparisons),
    arrays for many (a column at a time beats numpy's argmin along a short axis)."""
    start: Any = len(losses) - 1
    best: Any = np.inf
    for t, (loss, ok) in enumerate(zip(losses, allowed, strict=True)):
        if isinstance(loss, float):  # one task (a float, even numpy's)
            if ok and loss < best:
                best, start = loss, t
            continue
        better = ok & (loss < best)
        best = np.where(better, loss, best)
        start = np.where(better, t, start)
    return start


class StartChoice:
    """A start tier for each task from its per-tier pass probabilities, under one policy's
    settings and the ladder statistics its artifact learned (or the defaults)."""

    def __init__(self, catalog: Catalog, settings: PolicySettings,
                 ladder_stats: Mapping[str, Any] | None = None,
                 support: Mapping[str, Mapping[str, int]] | None = None) -> None:
        self.catalog = catalog
        self.settings = settings
        self.ladder_stats = ladder_stats or {}
        self.support = support or {}
        self.ladder = catalog.ladder
        self.rules = StaticRules(catalog)
        self.cost_model = LadderCostModel(catalog, settings, self.ladder_stats)
        self.impact = {name: f.impact for name, f in catalog.fields.items()}
        self.median_output = self.ladder_stats.get("median_output_tokens", {})
        errors = self.ladder_stats.get("gate_errors", {})
        self._false_pass = _false_pass_table(errors, self.rules, settings.false_pass_rate)
        self.false_pass_model = (errors.get("model") if settings.false_pass_rate is None
                                 else None)
        self._terms: dict[str, tuple[float, float]] = {}  # see terms
        # Per field, kappa^2 / (n + 1) per ladder tier: the pessimism's cell variances, 0 on
        # the field's static tier (doubt prices a move away from the rules, not the rules
        # themselves, so the static start stays the bar it is). No support table (an
        # artifact from before it, or no model): no pessimism.
        kappa2 = settings.pessimism ** 2
        self.penalties = {
            f: [0.0 if self.rules.static.get(f) == i else kappa2 / (float(cells.get(t, 0)) + 1.0)
                for i, t in enumerate(self.ladder)]
            for f, cells in self.support.items()} if kappa2 and support else {}
        self.unseen_penalty = [kappa2] * len(self.ladder)  # a field with no examples at all

    def with_settings(self, **changes: Any) -> StartChoice:
        """The same choice under other settings (e.g. another lam): a dial sweep."""
        return StartChoice(self.catalog, replace(self.settings, **changes), self.ladder_stats,
                           self.support)

    def penalty(self, field_name: str) -> list[float] | None:
        """The field's pessimism per ladder tier (None when planning is not pessimistic)."""
        if not self.penalties:
            return None
        return self.penalties.get(field_name, self.unseen_penalty)

    def planning_p(self, p: Any, fields: str | Fields | Sequence[str]) -> Any:
        """The probabilities the plan acts on: each lowered by its cell's pessimism (floored
        at 0). One task's list of floats, or an (n, L) array of many."""
        if not self.penalties:
            return p
        if isinstance(fields, str):
            return [max(x - math.sqrt(x * (1.0 - x) * c), 0.0)
                    for x, c in zip(p, self.penalty(fields), strict=True)]
        codes = Fields.of(fields)
        table = np.array([self.penalty(str(f)) for f in codes.names], dtype=float)
        c = table[codes.codes] if len(codes.names) else np.zeros_like(p)
        return np.maximum(p - np.sqrt(p * (1.0 - p) * c), 0.0)

    def lams(self, fields: Fields | Sequence[str]) -> Any:
        """Each task's lam (its field's own where a quality floor raised it)."""
        if not self.settings.field_lams:
            return self.settings.lam
        codes = Fields.of(fields)
        return codes.lookup({f: self.settings.lam_of(f) for f in map(str, codes.names)},
                            self.settings.lam)

    def output_tokens(self, fields: Sequence[Any], given: Sequence[float]) -> list[float]:
        """Expected completion tokens: as given, else the field's logged median."""
        default = [self.median_output.get(str(f), self.settings.default_output_tokens)
                   for f in fields]
        return [float(d if g != g else g)  # g != g: NaN
                for g, d in zip(given, default, strict=True)]

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

    def terms(self, field_name: str) -> tuple[float, float]:
        """lam x w(field) and the required pass probability, worked out once per field."""
        terms = self._terms.get(field_name)
        if terms is None:
            impact = float(self.impact.get(field_name, 5))
            terms = self._terms[field_name] = (
                self.settings.lam_of(field_name) * self.impact_weight(impact),
                self.required_pass_prob(impact))
        return terms

    def false_pass(self, fields: str | Fields | Sequence[str], p: Sequence[Any]) -> list[Any]:
        """Per ladder tier, P(truly failing | the gate accepted) for each task.

        With the audit's model (`gate_errors.model`): a logistic function of the tier and
        the task's predicted pass probability there, so a hard task accepted on a cheap tier
        is more likely a false pass; otherwise the audit's rate by field and tier."""
        fitted = self.false_pass_model
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

    def _losses(self, p: Sequence[Any], impact: Any, cost: Sequence[Any], bad: Sequence[Any],
                eligible: Sequence[Any], lam: Any) -> tuple[list[Any], list[Any]]:
        """Per tier, the loss the rule minimises and whether the tier may start."""
        top = len(self.ladder) - 1
        if self.settings.rule == "threshold":
            required = self.required_pass_prob(impact)
            allowed = [fits if t == top else fits & (p[t] >= required)
                       for t, fits in enumerate(eligible)]
            return list(cost), allowed
        price = lam * self.impact_weight(impact)
        return [c + price * b for c, b in zip(cost, bad, strict=True)], list(eligible)

    def starts_for(self, plan: Mapping[str, np.ndarray]) -> np.ndarray:
        """Start tiers chosen again from a plan's (n, L) expectations under these settings:
        a dial sweep without predicting or running the ladder model again."""
        eligible = np.asarray(plan["eligible"], dtype=bool)
        cost, bad, p = plan["expected_cost"], plan.get("expected_bad"), plan["p_plan"]
        columns = range(cost.shape[1])
        losses, allowed = self._losses(
            [p[:, t] for t in columns], plan["impact"], [cost[:, t] for t in columns],
            [None] * len(columns) if bad is None else [bad[:, t] for t in columns],
            [eligible[:, t] for t in columns], self.lams(plan["fields"]))
        return np.asarray(cheapest_start(losses, allowed), dtype=np.int64)

    def plan(self, p: np.ndarray, impact: np.ndarray, prompt_total: np.ndarray,
             output: np.ndarray, fields: Fields | Sequence[str],
             quantities: Sequence[str] = LadderCostModel.QUANTITIES
             ) -> dict[str, np.ndarray]:
        """Start tier (ladder index) for each task, with the numbers behind it.

        `p`: the probabilities to plan on (`planning_p`). Arrays in, (n,) / (n, L) arrays
        out; the work is done by `plan_columns`.
        """
        cols = self.plan_columns(list(p.T), impact, prompt_total, output,
                                 self.false_pass(fields, list(p.T)), quantities,
                                 lam=self.lams(fields))
        out = {"start": np.asarray(cols.pop("start"), dtype=np.int64),
               "required": np.asarray(cols.pop("required"), dtype=float)}
        return out | {k: np.column_stack(np.broadcast_arrays(*v)) for k, v in cols.items()}

    def plan_columns(self, p: Sequence[Any], impact: Any, prompt_total: Any, output: Any,
                     false_pass: Sequence[Any],
                     quantities: Sequence[str] = LadderCostModel.QUANTITIES,
                     lam: Any = None) -> dict[str, Any]:
        """The plan on per-tier columns: floats for one task, arrays for many.

        `expected_loss`: the least cost + lam x w(field) x P(bad outcome) among tiers that
        fit the context window. `threshold`: the cheapest expected cost among tiers that fit
        and meet the field's required pass probability; premium always qualifies.
        `quantities` must include cost and bad (what the choice uses); `lam`: per task
        (fields with their own dial), else the policy's.
        """
        cost, latency = self.cost_model.attempt_cost(prompt_total, output)
        expected = self.cost_model.expectations(p, cost, latency, false_pass, quantities)
        eligible = self.rules.eligible(prompt_total, output)
        losses, allowed = self._losses(p, impact, expected["cost"], expected["bad"], eligible,
                                       self.settings.lam if lam is None else lam)
        return {"start": cheapest_start(losses, allowed),
                "required": self.required_pass_prob(impact), "eligible": eligible,
                **{f"expected_{k}": v for k, v in expected.items()}}

    def plan_frame(self, tasks: pd.DataFrame, predict: Any,
                   quantities: Sequence[str] = LadderCostModel.QUANTITIES
                   ) -> dict[str, np.ndarray]:
        """A frame of tasks (flat columns) -> plan arrays, `predict` giving the (n, L) pass
        probabilities of the tasks with their planned expected output. The plan keeps the
        model's probabilities (`p`), the ones it acted on (`p_plan`) and the fields."""
        fields = Fields.of(tasks["field"])
        impact = fields.lookup(self.impact, 5)
        prompt_total = (tasks["prompt_tokens"] + tasks["context_tokens"]).to_numpy(float)
        median = fields.lookup(self.median_output, self.settings.default_output_tokens)
        given = pd.to_numeric(tasks.get("expected_output_tokens", pd.Series(np.nan, tasks.index)),
                              errors="coerce").to_numpy(float)
        output = np.where(np.isnan(given), median, given)
        p = predict(tasks, output)
        p_plan = self.planning_p(p, fields)
        return {"p": p, "p_plan": p_plan, "impact": impact, "fields": fields,
                **self.plan(p_plan, impact, prompt_total, output, fields, quantities)}


def _false_pass_table(errors: Mapping[str, Any], rules: StaticRules, override: float | None
                      ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """P(truly failing | accepted) by tier, and by tier -> field for every audited cell: the
    pessimistic rate, but the point rate on the field's static tier (as for the pass
    probabilities); `override` (router.policy.false_pass_rate) replaces them all."""
    ladder = rules.ladder
    if override is not None:
        return {t: float(override) for t in ladder}, {t: {} for t in ladder}
    by_tier = {t: float(errors.get("tier", {}).get(t, 0.0)) for t in ladder}
    by_field: dict[str, dict[str, float]] = {t: {} for t in ladder}
    point = errors.get("field_tier_point", {})
    for f, rates in errors.get("field_tier", {}).items():
        for t, rate in rates.items():
            if t in by_field:
                own = rules.static.get(f) == ladder.index(t)
                by_field[t][f] = float(point.get(f, {}).get(t, rate) if own else rate)
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
