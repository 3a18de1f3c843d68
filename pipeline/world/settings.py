"""conf/simulate as typed settings: the world model's every knob, built once per command.

conf/simulate/default.yaml holds every value and says what it means (data/README.md
explains the world); these dataclasses hold none, so a missing key fails naming it. The
per-field token figures are the catalog's (conf/fields), not the world's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from router_model.config import check, plain, typed

PER = ("course", "section")
ITEMS = (None, "lessons", "exercises")


def _span(where: str, bounds: list[int]) -> None:
    check(len(bounds) == 2 and 0 <= bounds[0] <= bounds[1], where, bounds,
          "needs [low, high] with 0 <= low <= high (inclusive)")


@dataclass(frozen=True)
class CourseMix:
    """`simulate.courses`: the Stage-4 analysis each course draws."""

    domains: dict[str, list[float]]  # name: [share of courses, difficulty offset]
    audience_levels: dict[str, list[float]]
    languages: dict[str, list[float]]
    complexity_beta: list[float]
    complexity_weight: float
    completeness_beta: list[float]
    completeness_weight: float
    sections: list[int]
    lessons_per_section: list[int]
    exercises_per_lesson: list[int]
    objectives: list[int]
    source_tokens_median: float
    source_tokens_sigma: float

    def __post_init__(self) -> None:
        for key in ("domains", "audience_levels", "languages"):
            table = getattr(self, key)
            check(bool(table) and all(len(v) == 2 and v[0] >= 0 for v in table.values())
                  and sum(v[0] for v in table.values()) > 0, f"simulate.courses.{key}",
                  table, "needs name: [share >= 0, difficulty offset], shares summing > 0")
        for key in ("complexity_beta", "completeness_beta"):
            value = getattr(self, key)
            check(len(value) == 2 and min(value) > 0, f"simulate.courses.{key}", value,
                  "needs Beta(a, b) as [a, b], both > 0")
        for key in ("sections", "lessons_per_section", "exercises_per_lesson", "objectives"):
            _span(f"simulate.courses.{key}", getattr(self, key))
        check(self.source_tokens_median > 0, "simulate.courses.source_tokens_median",
              self.source_tokens_median, "must be > 0")
        check(self.source_tokens_sigma >= 0, "simulate.courses.source_tokens_sigma",
              self.source_tokens_sigma, "must be >= 0")


@dataclass(frozen=True)
class Noise:
    """`simulate.noise`: what no router can see, and the gate's own errors."""

    course_sd: float
    task_sd: float
    attempt_sd: float
    gate_sd: float
    gate_false_pass: float
    gate_false_fail: float

    def __post_init__(self) -> None:
        for key in ("course_sd", "task_sd", "attempt_sd", "gate_sd"):
            check(getattr(self, key) >= 0, f"simulate.noise.{key}", getattr(self, key),
                  "must be >= 0")
        for key in ("gate_false_pass", "gate_false_fail"):
            check(0 <= getattr(self, key) <= 1, f"simulate.noise.{key}", getattr(self, key),
                  "must be in [0, 1]")


@dataclass(frozen=True)
class QualityCurve:
    """`simulate.quality`: true quality = floor + (ceiling - floor) * sigmoid(slope * margin)."""

    floor: float
    ceiling: float
    slope: float

    def __post_init__(self) -> None:
        check(0.0 <= self.floor <= self.ceiling <= 1.0, "simulate.quality.floor, ceiling",
              (self.floor, self.ceiling), "need 0 <= floor <= ceiling <= 1")


@dataclass(frozen=True)
class TierWorld:
    """`simulate.tiers.<tier>`: how good a tier is, in the world's terms."""

    skill: float
    language_gap: float  # extra difficulty per unit of language offset
    schema_error: float  # base chance of breaking the schema
    off_topic: float  # chance an output is off-topic
    completion_scale: float  # output length relative to the field's median


@dataclass(frozen=True)
class FieldWorld:
    """`simulate.fields.<field>`: how hard a field is and how its tasks are cut."""

    difficulty: float
    sensitivity: float  # how strongly course difficulty applies
    structure: float  # schema strictness: multiplies the tier's schema error rate
    per: str  # one task per course or per section
    items: str | None  # what a per-section batch holds (lessons | exercises); None: one item


@dataclass(frozen=True)
class TierPenalty:
    """A tier's extra difficulty where one of `domains` meets one of `audiences`."""

    domains: list[str]
    audiences: list[str]
    penalty: float


@dataclass(frozen=True)
class Interactions:
    """`simulate.interactions`: effects no per-field table can express (0 by default)."""

    token_curve: float
    complexity_x_incompleteness: float
    tier_domain_audience: dict[str, TierPenalty]


@dataclass(frozen=True)
class WorldSettings:
    """`simulate` in config: the log world model and what router-simulate logs of it."""

    seed: int
    n_courses: int
    epsilon: float  # share of tasks whose start tier is drawn at random
    start_time: str
    courses_per_day: float
    router_version: str
    log_shards: int
    shifted: bool  # router-simulate logs the world with its evaluation_shift applied
    audit_courses: int
    courses: CourseMix
    noise: Noise
    batch_difficulty: float
    quality: QualityCurve
    tiers: dict[str, TierWorld]
    fields: dict[str, FieldWorld]
    interactions: Interactions
    evaluation_shift: dict[str, Any] | None  # merged onto this world: another course mix

    def __post_init__(self) -> None:
        check(self.n_courses >= 1, "simulate.n_courses", self.n_courses, "must be >= 1")
        check(0.0 <= self.epsilon <= 1.0, "simulate.epsilon", self.epsilon, "must be in [0, 1]")
        check(self.courses_per_day > 0, "simulate.courses_per_day", self.courses_per_day,
              "must be > 0")
        check(self.log_shards >= 0, "simulate.log_shards", self.log_shards, "must be >= 0")
        check(self.audit_courses >= 0, "simulate.audit_courses", self.audit_courses,
              "must be >= 0")
        check(not self.shifted or bool(self.evaluation_shift), "simulate.shifted",
              self.shifted, "needs a world with an evaluation_shift (simulate=shift)")
        for name, t in self.tiers.items():
            for key in ("schema_error", "off_topic"):
                check(0 <= getattr(t, key) <= 1, f"simulate.tiers.{name}.{key}",
                      getattr(t, key), "must be in [0, 1]")
            check(t.completion_scale > 0, f"simulate.tiers.{name}.completion_scale",
                  t.completion_scale, "must be > 0")
        for name, f in self.fields.items():
            check(f.per in PER, f"simulate.fields.{name}.per", f.per, f"must be one of {PER}")
            check(f.items in ITEMS, f"simulate.fields.{name}.items", f.items,
                  f"must be one of {ITEMS}")

    def shifted_world(self) -> WorldSettings:
        """This world with its `evaluation_shift` merged in (the same world without one): the
        course mix router-evaluate's fresh world draws, and router-simulate's when `shifted`."""
        if not self.evaluation_shift:
            return self
        return world_settings(OmegaConf.merge(plain(self), self.evaluation_shift))


def world_settings(node: Any) -> WorldSettings:
    """conf/simulate (a composed `simulate` node, or a mapping) as typed settings; every key
    is checked and named in full."""
    return typed(WorldSettings, node, "simulate")
