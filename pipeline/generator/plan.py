"""The Stage-4 analysis_result as typed models: a course's features, its per-field briefs,
its sections and lessons, and its source material.

Only the shapes: reading and validating a file (with the JSON path of every problem, and the
router's own limits on the analysis) is `inputs.py`. The world model (pipeline/world) builds
its courses with these models, without the reader.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Text = Annotated[str, Field(min_length=1)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
METADATA_FIELDS = ("course_title", "course_description", "learning_outcomes",
                   "pedagogical_strategy")


class Brief(BaseModel):
    """What Stage 4 wants from one field: the gate's reference text."""

    model_config = STRICT
    objectives: Annotated[list[Text], Field(min_length=1)]
    key_points: list[Text] = Field(default_factory=list)

    def text(self) -> str:
        points = f" Key points: {'; '.join(self.key_points)}." if self.key_points else ""
        return f"Objectives: {'; '.join(self.objectives)}.{points}"


class Analysis(BaseModel):
    """Stage-4 features the router sees; extra keys are kept (finite values only)."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)
    domain: Text
    audience_level: Text
    language: Text
    complexity: Unit
    analysis_completeness: Unit


class Metadata(BaseModel):
    model_config = STRICT
    course_title: Brief
    course_description: Brief
    learning_outcomes: Brief
    pedagogical_strategy: Brief


class Lesson(BaseModel):
    model_config = STRICT
    brief: Brief
    exercises: Annotated[int, Field(ge=1, le=5)] = 1


class Section(BaseModel):
    model_config = STRICT
    brief: Brief
    lessons: Annotated[list[Lesson], Field(min_length=1)]


class AnalysisResult(BaseModel):
    """One course's Stage-4 output: features, per-field briefs and the source material."""

    model_config = STRICT
    course_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,100}$")]
    topic: Text
    analysis: Analysis
    metadata: Metadata
    sections: Annotated[list[Section], Field(min_length=1)]
    min_lessons: Annotated[int, Field(ge=1)] = 1
    source_material: str = ""

    @property
    def lesson_count(self) -> int:
        return sum(len(s.lessons) for s in self.sections)
