"""The policy's settings, its one dial, and where a dial's value comes from.

`lam` (USD per bad outcome) is the expected-loss rule's dial and `knob` the threshold rule's.
A dial is set in config, else read from what `router-train` calibrated into the artifact,
else a fixed fallback: `calibrated` is the one place that order is written down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from router_model.config import check

RULES = ("expected_loss", "threshold")
# The dial of an artifact that carries none (trained before dials were calibrated).
UNCALIBRATED_LAM = 1.0
UNCALIBRATED_KNOB = 0.85
# Every policy an artifact carries a calibrated dial for: key -> (rule, uses the lookup
# table). `policy` is the product; the others are the simple baselines and the older rule,
# built from the same logs and calibrated the same way, so comparisons are like for like.
POLICY_VARIANTS = {"policy": ("expected_loss", False), "threshold_policy": ("threshold", False),
                   "lookup_policy": ("expected_loss", True),
                   "lookup_threshold": ("threshold", True)}
# Each rule's dial and the grid it is calibrated on, safest last: a larger lam or knob starts
# higher on the ladder.
DIALS = {"expected_loss": ("lam", np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 61)])),
         "threshold": ("knob", np.linspace(0.0, 1.0, 101))}


@dataclass(frozen=True)
class PolicySettings:
    """`router.policy` in config (conf/router/default.yaml holds the defaults and what each
    setting means); built with `config.typed`."""

    rule: str
    lam: float | None  # USD per bad outcome; None: calibrated into the artifact
    impact_weights: tuple[float, ...]  # w(field) per impact score 1..10
    false_pass_rate: float | None  # None: the artifact's audit estimates (else 0)
    knob: float | None  # threshold rule only; None: calibrated
    impact_slope: float
    epsilon: float  # share of randomised start tiers (exploration, propensity logged)
    latency_usd_per_hour: float  # what an hour of generator wall time is worth
    pessimism: float  # kappa: standard errors off each (field, tier) cell's pass probability
    field_lams: dict[str, float] | None  # per-field dials (quality floors); None: calibrated
    default_schema_share: float
    default_severe_share: float
    default_retry_pass_rate: float
    default_output_tokens: float

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
        check(self.latency_usd_per_hour >= 0, "router.policy.latency_usd_per_hour",
              self.latency_usd_per_hour, "must be >= 0 USD per hour")
        check(self.pessimism >= 0, "router.policy.pessimism", self.pessimism,
              "must be >= 0 standard errors (0: plan on the model's probabilities as they are)")
        for name, value in (self.field_lams or {}).items():
            check(value >= 0, f"router.policy.field_lams.{name}", value, "must be >= 0")

    @property
    def latency_price_per_s(self) -> float:
        """USD per second of latency: the hourly value of generator wall time / 3600."""
        return self.latency_usd_per_hour / 3600.0

    def lam_of(self, field_name: str) -> float:
        """The dial for one field: the policy's lam, or the field's own when its quality
        floor needs more (a floor can only raise the price of a bad outcome)."""
        own = (self.field_lams or {}).get(field_name)
        return self.lam if own is None or own < self.lam else own


def calibrated(settings: PolicySettings, manifest: Mapping[str, Any] | None,
               key: str = "policy") -> PolicySettings:
    """`settings` with both dials set: as configured, else as calibrated into the artifact's
    manifest under `key` (one of POLICY_VARIANTS), else the uncalibrated fallback."""
    stored = (manifest or {}).get(key, {})
    if settings.lam is None:
        settings = replace(settings, lam=float(stored.get("lam", UNCALIBRATED_LAM)))
    if settings.knob is None:
        settings = replace(settings, knob=float(stored.get("knob", UNCALIBRATED_KNOB)))
    if settings.field_lams is None:
        settings = replace(settings, field_lams={str(f): float(v) for f, v in
                                                 stored.get("field_lams", {}).items()})
    return settings


def variant_settings(settings: PolicySettings, own_key: str, key: str,
                     **changes: Any) -> PolicySettings:
    """The settings of policy variant `key` derived from a policy calibrated under
    `own_key`: another variant reads its own dials from the artifact, not these."""
    if key not in POLICY_VARIANTS:
        raise ValueError(f"unknown policy variant {key!r}; known: {sorted(POLICY_VARIANTS)}")
    rule, _ = POLICY_VARIANTS[key]
    base = settings if key == own_key else replace(settings, lam=None, knob=None,
                                                   field_lams=None)
    return replace(base, rule=rule, **changes)
