"""The one gate: what a similarity and a schema check mean, and what the ladder does next.

Written once, over numpy arrays, so that the offline replay of millions of tasks, the log
world model, the public-benchmark harness and the serving endpoint that answers one gate
result at a time all run the very same rules, with the same per-field thresholds.

Tier indices follow `Catalog.tier_names`: ladder tiers 0..L-1 (cheap -> premium), then the
off-ladder overflow tier at index L.

Rules (seed note, "Escalation Strategy and Quality Gates"):
- schema valid and similarity >= the field's pass threshold: accept;
- schema error: escalate one tier;
- similarity < severe threshold: jump to the premium tier;
- otherwise (severe <= similarity < pass, or a transient error): retry at the same tier while
  retries remain, then escalate one tier;
- at the premium tier (or on the overflow tier, which has nowhere to go) every failure retries
  while retries remain; then the best attempt is kept and the field is flagged for review.

The score these rules read is calibrated: a scorer's raw score goes through the isotonic map
`router-gate-calibrate` fitted on labelled outputs (`CalibrationMap`), onto the seed's
quality scale, so 0.75 and 0.60 mean what the seed says. `gate_version` names the scorer, its
settings and its map: attempt logs, artifacts and the service carry it, so a router is never
silently served against a gate it did not learn.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np

from router_model.config import CONF_DIR, Catalog, GateConfig
from router_model.files import digest


class Action(IntEnum):
    ACCEPT = 0
    RETRY = 1
    ESCALATE = 2
    JUMP_PREMIUM = 3
    FLAG_FOR_REVIEW = 4


ACTION_NAMES = {Action.ACCEPT: "accept", Action.RETRY: "retry", Action.ESCALATE: "escalate",
                Action.JUMP_PREMIUM: "jump_to_premium",
                Action.FLAG_FOR_REVIEW: "flag_for_review"}


@dataclass(frozen=True)
class Gate:
    """Thresholds and the ladder's shape. `pass_threshold` is the gate's; `field_thresholds`
    holds the fields that set their own (conf/fields); `threshold` is the one place that
    says which applies."""

    n_ladder: int
    retries_per_tier: int
    pass_threshold: float
    severe_threshold: float
    field_thresholds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> Gate:
        g = catalog.gate
        own = {name: spec.pass_threshold for name, spec in catalog.fields.items()
               if spec.pass_threshold is not None}
        return cls(n_ladder=len(catalog.ladder), retries_per_tier=g.retries_per_tier,
                   pass_threshold=g.pass_threshold, severe_threshold=g.severe_threshold,
                   field_thresholds=own)

    def threshold(self, field_name: Any) -> float:
        """A field's pass threshold: its own, else the gate's."""
        return self.field_thresholds.get(str(field_name), self.pass_threshold)

    def pass_thresholds(self, fields: Sequence[Any] | None, n: int) -> np.ndarray:
        """Per-task pass thresholds (the gate's for every task when `fields` is None)."""
        if fields is None:
            return np.full(n, self.pass_threshold)
        return np.array([self.threshold(f) for f in fields], float)

    def passes(self, similarity: Any, schema_valid: Any, threshold: Any) -> np.ndarray:
        """Does the gate accept? (NaN similarity never passes.)"""
        with np.errstate(invalid="ignore"):
            return np.asarray(schema_valid, bool) & (np.asarray(similarity, float) >= threshold)

    def verdict(self, similarity: Any, schema_valid: Any, threshold: Any) -> np.ndarray:
        """The contract's error kind of each judged attempt (`none` when it passed)."""
        sim = np.asarray(similarity, float)
        valid = np.asarray(schema_valid, bool)
        with np.errstate(invalid="ignore"):
            severe = ~(sim >= self.severe_threshold)
        kind = np.where(severe, "severe_similarity", "low_similarity").astype(object)
        kind[~valid] = "schema"
        kind[self.passes(sim, valid, threshold)] = "none"
        return kind

    def next_step(self, tier: np.ndarray, retry: np.ndarray, similarity: np.ndarray,
                  schema_valid: np.ndarray, transient: np.ndarray | None = None, *,
                  threshold: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Vectorised rules. Returns (action, next tier, next retry count, reason code).

        `similarity` may be NaN when the call produced nothing to compare (treated as severe
        unless `transient` marks a rate limit / timeout, which is retried like a mid failure).
        `threshold` is the per-task pass threshold (`pass_thresholds`).
        """
        tier = np.asarray(tier)
        retry = np.asarray(retry)
        sim = np.asarray(similarity, dtype=float)
        valid = np.asarray(schema_valid, dtype=bool)
        transient = np.zeros_like(valid) if transient is None else np.asarray(transient, bool)
        top = self.n_ladder - 1
        stuck = tier >= top  # premium, or the off-ladder overflow tier
        can_retry = retry < self.retries_per_tier

        passed = self.passes(sim, valid, threshold) & ~transient
        with np.errstate(invalid="ignore"):
            severe = valid & ~transient & ~(sim >= self.severe_threshold)
        schema_err = ~valid & ~transient
        mid = ~passed & ~schema_err & ~severe

        action = np.full(tier.shape, Action.RETRY, dtype=np.int8)
        reason = np.full(tier.shape, "mid_similarity", dtype=object)
        nxt = tier.copy()
        nretry = retry + 1

        # Failures with somewhere to go.
        esc = ~stuck & (schema_err | (mid & ~can_retry))
        jump = ~stuck & severe
        action[esc] = Action.ESCALATE
        reason[esc & schema_err] = "schema_error"
        reason[esc & mid] = "retry_limit"
        nxt[esc] = tier[esc] + 1
        action[jump] = Action.JUMP_PREMIUM
        reason[jump] = "severe_similarity"
        nxt[jump] = top
        nretry[esc | jump] = 0

        # Failures with nowhere to go: retry while allowed, then flag.
        flag = ~passed & stuck & ~can_retry
        action[flag] = Action.FLAG_FOR_REVIEW
        reason[flag] = "exhausted"
        reason[~passed & stuck & can_retry & schema_err] = "schema_error"
        reason[~passed & stuck & can_retry & severe] = "severe_similarity"

        action[passed] = Action.ACCEPT
        reason[passed] = ""
        nxt[passed | flag] = tier[passed | flag]
        nretry[passed | flag] = retry[passed | flag]
        return action, nxt, nretry, reason


def flip_mask(truth: np.ndarray, false_pass: float, false_fail: float,
              rng: np.random.Generator) -> np.ndarray:
    """Which verdicts a noisy gate gets wrong: a truly passing output fails with probability
    `false_fail`, a truly failing one passes with probability `false_pass` (one uniform
    array for each side, drawn in that order). The one definition of simulated gate error:
    the world model, the evaluation's gate-error sweep and the public benchmarks use it."""
    return np.where(truth, rng.random(truth.shape) < false_fail,
                    rng.random(truth.shape) < false_pass)


# ---- the calibration map and the gate's version ----------------------------------------------

ANY_FIELD = "*"  # the map a field without its own uses


@dataclass(frozen=True)
class CalibrationMap:
    """Raw score -> the seed's quality scale, per field: the isotonic regression's knots,
    applied by linear interpolation between them and clipped at the ends (what scikit-learn's
    `IsotonicRegression.predict` does), so the map is monotone by construction."""

    knots: dict[str, tuple[tuple[float, ...], tuple[float, ...]]]

    @classmethod
    def from_dict(cls, maps: Mapping[str, Mapping[str, Sequence[float]]]) -> CalibrationMap:
        return cls({str(f): (tuple(map(float, m["x"])), tuple(map(float, m["y"])))
                    for f, m in maps.items()})

    def calibrated(self, field_name: str, raw: Any) -> np.ndarray:
        """The calibrated scores of `raw` (NaN stays NaN) for one field."""
        x, y = self.knots.get(str(field_name)) or self.knots[ANY_FIELD]
        raw = np.asarray(raw, float)
        return np.where(np.isnan(raw), np.nan, np.interp(raw, x, y))


def calibration_file(gate: GateConfig) -> Path | None:
    """The gate's calibration map file (relative paths are relative to conf/gate/)."""
    if not gate.calibration_map:
        return None
    path = Path(gate.calibration_map)
    return path if path.is_absolute() else Path(CONF_DIR) / "gate" / path


def read_calibration(gate: GateConfig) -> dict[str, Any] | None:
    """The fitted entry of the gate's scorer in its calibration file (None: no file, or no
    entry for this scorer: the gate then runs on raw scores)."""
    path = calibration_file(gate)
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text()).get("scorers", {}).get(gate.scorer)


def gate_version(gate: GateConfig) -> str:
    """Which gate judged: the scorer, its settings (and its components'), the guards and the
    fitted map, hashed. Equal versions score the same output the same way."""
    entry = read_calibration(gate)
    names = [gate.scorer, *gate.scorers.get(gate.scorer, {}).get("components", [])]
    settings = {n: gate.scorers.get(n) for n in names}
    key = digest(gate.scorer, settings, sorted(gate.guards), entry)[:12]
    return f"{gate.scorer}-{key}" if entry is not None else f"{gate.scorer}-raw-{key}"


def gate_mismatch(gate: GateConfig, manifest: Mapping[str, Any] | None) -> str | None:
    """Why a router artifact may not fit the gate it is served with: it learned another
    gate version (or does not say which). None when they match or there is no artifact."""
    if manifest is None:
        return None
    learned = manifest.get("gate_version")
    if not isinstance(learned, str) or len(learned) > 100:  # a manifest is not trusted text
        learned = None
    current = gate_version(gate)
    if learned == current:
        return None
    if learned is None:
        return (f"the router artifact {manifest.get('router_version')} does not record the "
                f"gate it learned; this service runs gate {current}: retrain with router-train "
                "on logs judged by this gate")
    return (f"the gate changed since the router learned it: artifact "
            f"{manifest.get('router_version')} learned gate {learned}, this service runs gate "
            f"{current}; its pass probabilities describe the old gate: retrain with "
            "router-train on logs judged by this gate")


def warn_if_gate_changed(gate: GateConfig, artifact: Any, log: Any) -> None:
    """Log `gate_mismatch`'s warning for a served artifact (None: nothing to compare)."""
    mismatch = gate_mismatch(gate, getattr(artifact, "manifest", None))
    if mismatch:
        log.warning(mismatch)
