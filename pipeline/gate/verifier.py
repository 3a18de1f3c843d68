"""The gate as one object: scorer, guards and calibration map, from conf/gate.

`Verifier.judge` takes the items of one attempt and returns, per item, the raw score (0 when
a guard tripped), the calibrated score the ladder's rules read (router_model/decide/gate.py),
and what tripped; the generator gates every item on its own calibrated score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.gate.judge import LLMJudge
from pipeline.gate.scorers import (
    BriefCosine,
    Combo,
    Encode,
    Judged,
    KeypointCoverage,
    Novelty,
    Scores,
    Specificity,
)
from pipeline.gate.text import GUARDS, guard_reasons
from router_model.config import ConfigError, GateConfig, check, typed
from router_model.decide.gate import CalibrationMap, gate_version, read_calibration

BASE_SCORERS = ("brief_cosine", "keypoint_coverage", "novelty", "specificity", "llm_judge")


@dataclass(frozen=True)
class CosineSettings:
    chars: int


@dataclass(frozen=True)
class CoverageSettings:
    chunk_sentences: int
    max_chunks: int


@dataclass(frozen=True)
class LexicalSettings:
    pass


@dataclass(frozen=True)
class JudgeSettings:
    tier: str
    max_tokens: int


@dataclass(frozen=True)
class ComboSettings:
    components: list[str]

    def __post_init__(self) -> None:
        check(bool(self.components) and set(self.components) <= set(BASE_SCORERS),
              "gate.scorers.combo.components", self.components,
              f"needs one or more of {BASE_SCORERS}")


SETTINGS = {"brief_cosine": CosineSettings, "keypoint_coverage": CoverageSettings,
            "novelty": LexicalSettings, "specificity": LexicalSettings,
            "llm_judge": JudgeSettings,
            "combo": ComboSettings}


def scorer_settings(gate: GateConfig, name: str) -> Any:
    """One scorer's settings from conf/gate `scorers.<name>`, typed."""
    if name not in SETTINGS:
        raise ConfigError(f"gate.scorer={name!r}: known scorers are {sorted(SETTINGS)}")
    return typed(SETTINGS[name], gate.scorers.get(name) or {}, f"gate.scorers.{name}")


def base_scorer(gate: GateConfig, name: str, encode: Encode | None, llm: Any) -> Any:
    """A single (not stacked) scorer by name."""
    s = scorer_settings(gate, name)
    if name == "brief_cosine":
        return BriefCosine(_need(encode, name), s.chars)
    if name == "keypoint_coverage":
        return KeypointCoverage(_need(encode, name), s.chunk_sentences, s.max_chunks)
    if name == "novelty":
        return Novelty()
    if name == "specificity":
        return Specificity()
    if llm is None:
        raise ConfigError("gate.scorer uses llm_judge, which needs a provider client")
    return LLMJudge(llm, s.tier, s.max_tokens)


def _need(encode: Encode | None, name: str) -> Encode:
    if encode is None:
        raise ConfigError(f"the {name} scorer needs the MiniLM embedder")
    return encode


def build_scorer(gate: GateConfig, name: str, encode: Encode | None, llm: Any,
                 fitted: dict[str, Any] | None) -> Any:
    """The scorer `name`; a combo takes its coefficients from the fitted calibration entry."""
    if name != "combo":
        return base_scorer(gate, name, encode, llm)
    components = scorer_settings(gate, "combo").components
    stack = (fitted or {}).get("stack")
    if not stack or stack.get("components") != components:
        raise ConfigError("gate.scorer=combo has no fitted stack for components "
                          f"{components} in {gate.calibration_map}: run router-gate-calibrate")
    return Combo([base_scorer(gate, c, encode, llm) for c in components],
                 list(stack["coef"]), float(stack["intercept"]))


@dataclass
class Verdicts:
    """Per item of one attempt: raw score, calibrated score, tripped guards; the cost of
    scoring (a judge's calls)."""

    raw: np.ndarray
    calibrated: np.ndarray
    reasons: list[list[str]]
    parts: dict[str, np.ndarray]
    cost_usd: float = 0.0


class Verifier:
    """conf/gate's scorer, guards and calibration map, built once per run."""

    def __init__(self, gate: GateConfig, encode: Encode | None, llm: Any = None) -> None:
        unknown = sorted(set(gate.guards) - set(GUARDS))
        check(not unknown, "gate.guards", gate.guards, f"known guards are {GUARDS}")
        self.gate = gate
        self.fitted = read_calibration(gate)
        self.map = CalibrationMap.from_dict(self.fitted["maps"]) if self.fitted else None
        self.scorer = build_scorer(gate, gate.scorer, encode, llm, self.fitted)
        self.version = gate_version(gate)

    def calibrate(self, field: str, raw: float) -> float:
        """One raw score on the seed's quality scale (clipped raw when uncalibrated)."""
        if self.map is None:
            return float(np.clip(raw, 0.0, 1.0))
        return float(self.map.calibrated(field, raw))

    async def judge(self, items: Sequence[Judged]) -> Verdicts:
        if not items:
            empty = np.zeros(0)
            return Verdicts(empty, empty, [], {})
        scores: Scores = await self.scorer.score(items)
        reasons = [guard_reasons(i.text, i.language, self.gate.guards, i.field)
                   for i in items]
        raw = np.where([bool(r) for r in reasons], 0.0, scores.raw)
        calibrated = (np.array([float(self.map.calibrated(i.field, r))
                                for i, r in zip(items, raw, strict=True)])
                      if self.map is not None else np.clip(raw, 0.0, 1.0))
        return Verdicts(raw, calibrated, reasons, scores.parts, scores.cost_usd)
