"""A validated analysis_result -> the course's Stage-5 tasks, phase by phase, with prompts.

One task per field instance, as in the world model: the course-level fields once, section
titles and quality checks per section, and a section's lessons (and its exercises) as one
batched task. Each item of a task carries its reference text: the brief Stage 4 gave for it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.generator.inputs import METADATA_FIELDS, AnalysisResult, Brief
from pipeline.generator.schemas import OUTPUTS, OutputSpec
from router_model.config import FieldSpec

SYSTEM_PROMPT = ("You write one part of an online course (Stage 5 of a course pipeline). "
                 "Follow each item's brief closely and answer with one JSON object that "
                 "matches the given schema, nothing else.")
TASK_MARKER = "TASK:"
SOURCE_MARKER = "SOURCE MATERIAL:"


def estimate_tokens(text: str) -> int:
    """About 4 characters per token: the routing estimate (usage gives the billed count)."""
    return math.ceil(len(text) / 4)


@dataclass
class Task:
    """One field instance of one course."""

    course_id: str
    task_id: str
    field: str
    phase: int
    topic: str
    items: dict[str, str]  # item id -> reference text (the brief)
    context: str
    analysis: dict[str, Any]
    expected_output_tokens: int

    @property
    def spec(self) -> OutputSpec:
        return OUTPUTS[self.field]

    @property
    def brief(self) -> str:
        return " ".join(self.items.values())

    def instructions(self, item_ids: list[str]) -> str:
        task = {"course_id": self.course_id, "task_id": self.task_id, "field": self.field,
                "topic": self.topic, "analysis": self.analysis,
                "items": [{"id": i, "brief": self.items[i]} for i in item_ids]}
        schema = json.dumps(self.spec.json_schema(), separators=(",", ":"))
        return (f"Write the {self.field.replace('_', ' ')} for this course"
                f"{' (one array item per id)' if self.spec.batched else ''}.\n"
                f"{TASK_MARKER}\n{json.dumps(task, separators=(',', ':'))}\n"
                f"JSON schema: {schema}\n")

    def messages(self, item_ids: list[str]) -> list[dict[str, str]]:
        user = f"{self.instructions(item_ids)}{SOURCE_MARKER}\n{self.context}"
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def router_task(self) -> dict[str, Any]:
        """What the router scores: field, token counts, Stage-4 analysis, brief."""
        return {"field": self.field,
                "prompt_tokens": estimate_tokens(SYSTEM_PROMPT + self.instructions(
                    list(self.items))),
                "context_tokens": estimate_tokens(self.context),
                "expected_output_tokens": self.expected_output_tokens,
                "analysis": self.analysis, "brief": self.brief}


def course_analysis(result: AnalysisResult) -> dict[str, Any]:
    """The analysis the router and the logs see: Stage-4 features plus counts."""
    objectives = sum(len(b.objectives) for b in _metadata(result).values())
    return {**result.analysis.model_dump(), "section_count": len(result.sections),
            "lesson_count": result.lesson_count, "objective_count": objectives,
            "source_tokens": estimate_tokens(result.source_material)}


def _metadata(result: AnalysisResult) -> dict[str, Brief]:
    return {f: getattr(result.metadata, f) for f in METADATA_FIELDS}


def build_tasks(result: AnalysisResult, fields: Mapping[str, FieldSpec]) -> list[Task]:
    """Every task of the course, ordered by phase. Each field's phase and token figures are
    the catalog's (conf/fields): how much source goes in, how long an item's answer is
    expected to be (the router's size feature and the max_tokens basis)."""
    analysis = course_analysis(result)
    cid = result.course_id

    def task(field: str, ordinal: int, items: dict[str, str]) -> Task:
        spec = fields[field]
        context = result.source_material[:int(len(result.source_material) * spec.context_share)]
        growth = 1.0 + 0.3 * float(result.analysis.complexity)
        return Task(course_id=cid, task_id=f"{cid}-{field}-{ordinal}", field=field,
                    phase=spec.phase, topic=result.topic, items=items, context=context,
                    analysis=analysis,
                    expected_output_tokens=round(spec.output_tokens * len(items) * growth))

    plan_summary = " ".join(s.brief.objectives[0] for s in result.sections)
    tasks = [task("input_validation", 0, {"plan": f"Course plan for {result.topic}: "
                                                  f"{plan_summary}"})]
    tasks += [task(f, 0, {f: b.text()}) for f, b in _metadata(result).items()]
    for k, section in enumerate(result.sections):
        lessons = {f"s{k}-l{j}": lesson.brief.text() for j, lesson in enumerate(section.lessons)}
        exercises = {f"s{k}-l{j}-e{e}": lesson.brief.text()
                     for j, lesson in enumerate(section.lessons) for e in range(lesson.exercises)}
        tasks += [task("section_title", k, {f"s{k}": section.brief.text()}),
                  task("lesson_content", k, lessons), task("exercise", k, exercises),
                  task("quality_check", k, {f"s{k}-check": f"Quality review of section {k + 1}. "
                                                           f"{section.brief.text()}"})]
    tasks.append(task("min_lessons_check", 0, {"count": (
        f"The course {result.topic} has {result.lesson_count} lessons in "
        f"{len(result.sections)} sections; at least {result.min_lessons} are required.")}))
    return sorted(tasks, key=lambda t: t.phase)
