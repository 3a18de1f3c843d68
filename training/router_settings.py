"""`router` in config as the training commands read it, typed once by each command's CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router_model.decide.settings import PolicySettings
from training.guarantee import GuaranteeSettings
from training.knob import CalibrationTarget


@dataclass(frozen=True)
class RouterSettings:
    """conf/router (its comments say what each key means): the features the model sees, the
    served artifact, the policy, and how router-train sets and certifies the policy's dial."""

    features: dict[str, Any]  # FeatureSpec.from_config reads it
    artifact: str
    policy: PolicySettings
    calibrate: CalibrationTarget
    guarantee: GuaranteeSettings
