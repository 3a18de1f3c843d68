"""A dial with a guarantee: the deployed policy's impact-weighted true pass is at least the
static rules', with probability >= 1 - delta, certified on courses nothing was fitted on.

What is certified. For a dial value lam, D(lam) = R(policy at lam) - R(static), where R is
the impact-weighted rate of bad outcomes (the final output truly fails, or is flagged). The
guarantee holds when D(lam) <= margin (0: at or above static's quality). Pairing the policy
with the static rules is what gives the test power: on every task where the two start on the
same tier their outcomes are the same, so only the tasks the policy moves carry variance.

How it is estimated (prediction-powered inference, Angelopoulos et al., Science 2023, on a
doubly robust pair). On every certification task the model's own prediction gives
m(pi) - m(static), from the expected bad outcome of each start; on the tasks whose true
outcome is known, the error of that prediction is corrected with the logged outcome,
weighted by 1 / propensity where the logged start is the policy's (or static's) start. The
true outcome is the audit's verdict on the chain's final output where the logs have audits
(a random sample of courses, so the correction is unbiased for the whole set), and the
gate's otherwise (then the guarantee is on the gate's verdict, and the result says so).
Courses are the independent units; the p-value of H0: D(lam) > margin is a one-sided normal
test of the course-level estimate (asymptotic, as PPI's intervals are). Bad outcomes are
rare and the tasks that carry the policy's side are few (those the logs explored onto the
moved tier), so the empirical variance of that side can come out far too small; its
standard error is floored at the binomial one with an Agresti-Coull rate, (k + 2) / (n + 4)
of the n matched tasks' k bad outcomes, which keeps the test's rejections of a true null
near delta in simulation (tests/training/test_guarantee.py). A dial needs at least
`min_matched` labelled tasks where the logs started on the policy's moved tier.

Learn-then-Test (Angelopoulos, Bates et al. 2021): dial values from the safest down, fixed
sequence (no multiplicity correction); the cheapest value rejected before the first
non-rejection is certified. The certification courses (`router.guarantee.share`) are kept
out of the model's fit, the ladder statistics and the false-pass model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from router_model.config import check
from router_model.decide.policy import RoutingPolicy
from router_model.decide.settings import DIALS
from training.propensity import inverse_propensity_weights


@dataclass(frozen=True)
class GuaranteeSettings:
    """`router.guarantee` (conf/router holds the defaults and what each key means)."""

    enabled: bool
    delta: float
    margin: float
    share: float
    min_matched: int

    def __post_init__(self) -> None:
        check(0.0 < self.delta < 1.0, "router.guarantee.delta", self.delta, "must be in (0, 1)")
        check(0.0 <= self.margin < 1.0, "router.guarantee.margin", self.margin,
              "must be in [0, 1): how far below static's quality the guarantee may allow")
        check(0.0 < self.share < 1.0, "router.guarantee.share", self.share,
              "must be in (0, 1): the share of courses kept to certify on")
        check(self.min_matched >= 1, "router.guarantee.min_matched", self.min_matched,
              "must be >= 1")


@dataclass(frozen=True)
class Certification:
    """One row per certification task: the logged start, its propensity, the chain's bad
    outcome, whether that outcome is the audit's, the task's course and impact."""

    tasks: pd.DataFrame
    logged: np.ndarray
    propensity: np.ndarray
    bad: np.ndarray
    labelled: np.ndarray
    course: np.ndarray
    outcome: str

    @classmethod
    def of(cls, rows: pd.DataFrame, ladder: list[str]) -> Certification:
        """From the certification courses' examples: each task's start-tier example."""
        start = rows[rows["is_start"].astype(bool) & rows["tier"].isin(ladder)]
        start = start.drop_duplicates("task_id").reset_index(drop=True)
        audit = pd.Series(start["final_audit"], dtype="boolean")
        audited = audit.notna().to_numpy()
        passed = start["final_passed"].to_numpy(bool)
        if audited.any():  # the truth where audited; the model alone elsewhere
            bad, labelled, outcome = ~(passed & audit.fillna(False).to_numpy(bool)), audited, \
                "audited true pass (the audited courses label; the rest by the model)"
        else:
            bad, labelled, outcome = ~passed, np.ones(len(start), bool), \
                "gate pass (the logs have no audit)"
        return cls(start, start["tier"].map({t: i for i, t in enumerate(ladder)}).to_numpy(),
                   start["propensity"].to_numpy(float), bad.astype(float), labelled,
                   pd.factorize(start["course_id"])[0], outcome)


def paired_terms(cert: Certification, expected_bad: np.ndarray, start: np.ndarray,
                 static: np.ndarray, impact: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per task, the model's weighted difference (policy - static) and its correction on
    labelled tasks; both zero where the policy starts where static does."""
    rows = np.arange(len(start))
    moved = start != static
    model = impact * (expected_bad[rows, start] - expected_bad[rows, static]) * moved
    fix = impact * moved * cert.labelled * (
        inverse_propensity_weights(start, cert.logged, cert.propensity)
        * (cert.bad - expected_bad[rows, start])
        - inverse_propensity_weights(static, cert.logged, cert.propensity)
        * (cert.bad - expected_bad[rows, static]))
    return model, fix


def binomial_floor(cert: Certification, impact: np.ndarray, on_policy: np.ndarray) -> float:
    """The least standard error the policy side's correction can have: the binomial one of
    its matched tasks' bad outcomes at an Agresti-Coull rate, weighted as the estimate is."""
    total = float((impact * cert.labelled).sum())
    if total == 0.0:
        return float("inf")  # nothing labelled: no evidence at all
    k, n = float(cert.bad[on_policy].sum()), float(on_policy.sum())
    rate = (k + 2.0) / (n + 4.0)
    weights = impact[on_policy] / cert.propensity[on_policy]
    return float(np.sqrt((weights ** 2).sum() * rate * (1 - rate))) / total


def course_ratio(numerator: np.ndarray, weights: np.ndarray, course: np.ndarray,
                 keep: np.ndarray) -> tuple[float, float]:
    """A ratio of course sums over the kept courses and its delta-method standard error."""
    num = np.bincount(course, weights=numerator)[keep]
    den = np.bincount(course, weights=weights)[keep]
    if len(num) < 2:
        return 0.0, float("inf")
    ratio = num.sum() / den.sum()
    se = np.std(num - ratio * den, ddof=1) * np.sqrt(len(num)) / den.sum()
    return float(ratio), float(se)


def check_dial(cert: Certification, plan: dict[str, Any], start: np.ndarray,
              static: np.ndarray, settings: GuaranteeSettings) -> dict[str, Any]:
    """The estimate of D at one dial value, its standard error and the p-value of D > margin
    (1 when fewer than `min_matched` labelled tasks started on the policy's moved tier)."""
    model, fix = paired_terms(cert, plan["expected_bad"], start, static, plan["impact"])
    everyone = np.ones(cert.course.max() + 1, bool)
    labelled = np.bincount(cert.course, weights=cert.labelled) > 0
    m, m_se = course_ratio(model, plan["impact"], cert.course, everyone)
    c, c_se = course_ratio(fix, plan["impact"] * cert.labelled, cert.course, labelled)
    on_policy = (start == cert.logged) & (start != static) & cert.labelled
    matched = int(on_policy.sum())
    moved = bool((start != static).any())
    c_se = max(c_se, binomial_floor(cert, plan["impact"], on_policy))
    estimate, se = m + c, float(np.hypot(m_se, c_se))
    if not moved:
        p_value = 1.0  # the rules themselves: nothing to certify beyond static
    elif matched < settings.min_matched or not np.isfinite(se) or se == 0:
        p_value = 1.0
    else:
        p_value = float(stats.norm.cdf((estimate - settings.margin) / se))
    return {"estimate": estimate, "se": se, "p_value": p_value, "matched": matched}


def fixed_sequence(values: list[float], test: Any, delta: float
                   ) -> tuple[list[dict[str, Any]], float | None]:
    """Test `values` in order (safest first) until the first p-value above delta; the last
    value rejected before it is the chosen one (None when the first is not rejected)."""
    tested, chosen = [], None
    for value in values:
        row = test(value)
        tested.append(row)
        if row["p_value"] > delta:
            break
        chosen = value
    return tested, chosen


def learn_then_test(policy: RoutingPolicy, rows: pd.DataFrame, settings: GuaranteeSettings
                    ) -> dict[str, Any]:
    """The cheapest dial certified to keep the impact-weighted true pass at or above static's
    (less `margin`) with probability >= 1 - delta, on the certification courses `rows`."""
    if not policy.learned:
        raise ValueError("the guarantee needs a trained model's pass probabilities; "
                         "run router-train first")
    cert = Certification.of(rows, policy.ladder)
    plan = policy.start_tiers(cert.tasks)
    static = policy.rules.static_starts(cert.tasks["field"])
    dial, grid = DIALS[policy.settings.rule]

    def tested_at(value: float) -> dict[str, Any]:
        start = policy.choice.with_settings(**{dial: value}).starts_for(plan)
        return {"value": value, **check_dial(cert, plan, start, static, settings)}

    tested, chosen = fixed_sequence([float(v) for v in grid[::-1]], tested_at, settings.delta)
    return {"dial": dial, "value": chosen, "certified": chosen is not None,
            "outcome": cert.outcome, "delta": settings.delta, "margin": settings.margin,
            "courses": int(cert.course.max() + 1) if len(cert.course) else 0,
            "labelled_courses": int((np.bincount(cert.course, weights=cert.labelled)
                                     > 0).sum()) if len(cert.course) else 0,
            "explored_share": float((cert.tasks["start_source"] == "exploration").mean()),
            "tested": tested}
