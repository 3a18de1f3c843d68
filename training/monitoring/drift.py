"""Drift of recent traffic against the artifact's reference: features, outcomes, calibration.

Every statistic comes with a test, and an alert needs both: an effect at least as large as
`conf/monitor` asks (PSI, a rate difference, an ECE) and a test that chance cannot explain at
the family's Bonferroni-corrected level. The effect floor keeps big windows from alerting on
trivial moves; the test keeps small windows from alerting on noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from router_model.config import check
from training.metrics import expected_calibration_error
from training.reference import MISSING, bin_shares, category_counts

SHARE_FLOOR = 1e-4  # PSI's logarithm needs a floor for empty bins


@dataclass(frozen=True)
class DriftSettings:
    """conf/monitor's thresholds (see the file for what each one means)."""

    min_tasks: int
    alpha: float
    psi_alert: float
    outcome_min_effect: float
    outcome_min_cell: int
    outcome_alerts: tuple[str, ...]
    ece_alert: float
    calibration_resamples: int
    seed: int

    def __post_init__(self) -> None:
        check(self.min_tasks >= 1, "monitor.drift.min_tasks", self.min_tasks, "must be >= 1")
        check(0 < self.alpha < 1, "monitor.drift.alpha", self.alpha, "must be in (0, 1)")
        for key in ("psi_alert", "outcome_min_effect", "ece_alert"):
            check(getattr(self, key) > 0, f"monitor.drift.{key}", getattr(self, key),
                  "must be > 0")
        check(self.outcome_min_cell >= 1, "monitor.drift.outcome_min_cell",
              self.outcome_min_cell, "must be >= 1")
        check(self.calibration_resamples >= 20, "monitor.drift.calibration_resamples",
              self.calibration_resamples, "must be >= 20")
        unknown = set(self.outcome_alerts) - {"first_pass", "flag", "escalation"}
        check(not unknown, "monitor.drift.outcome_alerts", sorted(unknown),
              "known: first_pass, flag, escalation")


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, float), SHARE_FLOOR)
    a = np.maximum(np.asarray(actual, float), SHARE_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def _with_missing(shares: np.ndarray, missing: float) -> np.ndarray:
    return np.append(np.asarray(shares, float) * (1.0 - missing), missing)


def _continuous(ref: dict[str, Any], values: pd.Series, n_effective: int) -> dict[str, Any]:
    """PSI over the reference's decile bins (plus a missing bin) and a one-sample KS test
    against the reference's quantile function, at the effective sample size."""
    x = pd.to_numeric(values, errors="coerce").to_numpy(float)
    finite = x[np.isfinite(x)]
    missing = 1.0 - finite.size / max(x.size, 1)
    value = psi(_with_missing(ref["shares"], ref["missing"]),
                _with_missing(bin_shares(finite, ref["edges"]), missing))
    q = np.asarray(ref["quantiles"], float)
    grid, last = np.unique(q[::-1], return_index=True)  # the highest probability per value
    probs = np.linspace(1.0, 0.0, q.size)[last]
    if finite.size == 0:  # the logs stopped carrying it: an absent feature, not a shift
        return {"psi": value, "test": "ks", "statistic": None, "p_value": 0.0,
                "absent": ref["missing"] < 0.5}
    test = stats.ks_1samp(finite, lambda v: np.interp(v, grid, probs, left=0.0, right=1.0))
    n = max(min(n_effective, finite.size), 1)
    return {"psi": value, "test": "ks", "statistic": float(test.statistic),
            "p_value": float(stats.kstwo.sf(test.statistic, n))}


def _categorical(ref: dict[str, Any], values: pd.Series, n_effective: int) -> dict[str, Any]:
    """PSI and a chi-square goodness-of-fit test over the reference categories (categories
    never seen in training share one extra cell), its statistic scaled to the effective
    sample size (a first-order design-effect correction)."""
    known = list(ref["shares"])
    counts = category_counts(values)
    observed = np.array([counts.get(k, 0) for k in known]
                        + [counts[~counts.index.isin(known)].sum()], float)
    expected = np.maximum(np.array([ref["shares"][k] for k in known] + [0.0]), SHARE_FLOOR)
    expected = expected / expected.sum()
    n = observed.sum()
    value = psi(expected, observed / max(n, 1))
    statistic = (float(stats.chisquare(observed, expected * n).statistic)
                 * min(n_effective, n) / n) if n else None
    p_value = float(stats.chi2.sf(statistic, len(observed) - 1)) if n else 1.0
    return {"psi": value, "test": "chi2", "statistic": statistic, "p_value": p_value,
            "unseen_share": float(observed[-1] / max(n, 1)),
            "missing_share": float(counts.get(MISSING, 0) / max(n, 1))}


def feature_drift(reference: dict[str, dict[str, Any]], tasks: pd.DataFrame,
                  settings: DriftSettings) -> list[dict[str, Any]]:
    """One row per reference feature: PSI, the test, and whether it alerts. Tasks of one
    course share its analysis, so the tests count courses, not tasks."""
    level = settings.alpha / max(len(reference), 1)
    n_effective = int(tasks["course_id"].nunique()) if len(tasks) else 0
    enough = len(tasks) >= settings.min_tasks
    rows = []
    for name, ref in reference.items():
        if name not in tasks.columns:
            rows.append({"feature": name, "absent": True, "alert": enough,
                         "psi": None, "p_value": None})
            continue
        measure = _continuous if ref["kind"] == "continuous" else _categorical
        row = {"feature": name, "kind": ref["kind"], **measure(ref, tasks[name], n_effective)}
        row["alert"] = bool(enough and (row.get("absent") or (
            row["psi"] >= settings.psi_alert and row["p_value"] < level)))
        rows.append(row)
    return rows


def _effective(k: float, n: float, courses: float) -> tuple[int, int]:
    """Counts shrunk to the course count: tasks of one course are not independent."""
    scale = min(courses, n) / n if n else 1.0
    return round(k * scale), max(round(n * scale), 1 if n else 0)


def _rate_row(family: str, key: dict[str, str], ref: dict[str, Any], cell: pd.DataFrame,
              column: str, settings: DriftSettings, level: float) -> dict[str, Any]:
    """Recent rate against the reference's: a Wilson interval, and Fisher's exact test of
    the two samples (the reference is a sample too), both at effective sizes."""
    cell = cell[cell[column].notna()]
    values = cell[column].astype(float)
    n, k = len(values), int(values.sum())
    row: dict[str, Any] = {"family": family, **key, "reference": ref.get("rate"),
                           "reference_n": ref.get("n", 0), "n": n,
                           "rate": k / n if n else None, "ci_low": None, "ci_high": None,
                           "p_value": None, "alert": False}
    if not n or ref.get("rate") is None:
        return row
    k1, n1 = _effective(k, n, cell["course_id"].nunique())
    k0, n0 = _effective(ref["rate"] * ref["n"], ref["n"], ref.get("courses", ref["n"]))
    ci = stats.binomtest(k1, n1).proportion_ci(confidence_level=0.95, method="wilson")
    p_value = float(stats.fisher_exact([[k1, n1 - k1], [k0, n0 - k0]]).pvalue) if n0 else 1.0
    row.update(ci_low=float(ci.low), ci_high=float(ci.high), p_value=p_value)
    row["alert"] = bool(family in settings.outcome_alerts and n >= settings.outcome_min_cell
                        and abs(row["rate"] - ref["rate"]) >= settings.outcome_min_effect
                        and p_value < level)
    return row


def outcome_drift(reference: dict[str, Any], tasks: pd.DataFrame, settings: DriftSettings
                  ) -> dict[str, Any]:
    """First-attempt pass per (field, start tier), escalation and flag rate per field, and
    cost per course, each against the reference."""
    cells: list[tuple[str, dict[str, str], dict[str, Any], pd.DataFrame, str]] = []
    for field, tiers in reference.get("first_pass", {}).items():
        for tier, ref in tiers.items():
            mask = (tasks["field"] == field) & (tasks["start_tier"] == tier)
            cells.append(("first_pass", {"field": field, "tier": tier}, ref, tasks[mask],
                          "first_pass"))
    for family, column in (("escalation", "escalated"), ("flag", "flagged")):
        for field, ref in reference.get(family, {}).items():
            cells.append((family, {"field": field}, ref, tasks[tasks["field"] == field],
                          column))
    level = settings.alpha / max(len(cells), 1)
    rows = [_rate_row(*cell, settings, level) for cell in cells]
    per_course = tasks.groupby("course_id")["cost"].sum()
    ref_cost = reference.get("cost_per_course", {})
    mean = float(per_course.mean()) if len(per_course) else None
    half = (float(stats.t.ppf(0.975, len(per_course) - 1) * per_course.std(ddof=1)
                  / np.sqrt(len(per_course))) if len(per_course) > 1 else None)
    cost = {"reference": ref_cost.get("mean"), "value": mean, "courses": len(per_course),
            "ci_low": mean - half if half is not None else None,
            "ci_high": mean + half if half is not None else None}
    return {"rates": rows, "cost_per_course": cost}


def reliability(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> list[dict[str, float]]:
    """Mean prediction against pass rate in equal-width bins (the reliability curve)."""
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    out = []
    for b in np.unique(bins):
        mask = bins == b
        out.append({"bin": int(b), "n": int(mask.sum()), "mean_p": float(p[mask].mean()),
                    "pass_rate": float(y[mask].mean())})
    return out


def calibration_drift(p: np.ndarray, y: np.ndarray, reference_ece: float | None,
                      settings: DriftSettings) -> dict[str, Any]:
    """ECE of the served probabilities against the verdicts that followed, and how likely
    that ECE is if the probabilities were right (labels redrawn from them: a consistency
    resampling test)."""
    keep = np.isfinite(p) & np.isfinite(y)
    p, y = p[keep], y[keep]
    if p.size == 0:
        return {"n": 0, "ece": None, "p_value": None, "alert": False, "curve": []}
    ece = expected_calibration_error(y, p)
    rng = np.random.default_rng(settings.seed)
    null = [expected_calibration_error((rng.random(p.size) < p).astype(float), p)
            for _ in range(settings.calibration_resamples)]
    p_value = float((1 + np.sum(np.asarray(null) >= ece)) / (1 + len(null)))
    return {"n": int(p.size), "ece": ece, "reference_ece": reference_ece,
            "chance_ece_95": float(np.quantile(null, 0.95)), "p_value": p_value,
            "alert": bool(p.size >= settings.min_tasks and ece >= settings.ece_alert
                          and p_value < settings.alpha),
            "curve": reliability(p, y)}
