"""A validated analysis_result -> the course's Stage-5 tasks, phase by phase, with prompts.

One task per field instance, as in the world model: the course-level fields once, section
titles and quality checks per section, and a section's lessons (and its exercises) as one
batched task. Each item of a task carries its reference text: the brief Stage 4 gave for it.

`build_tasks` and `Task.router_task` are the one definition of a task's routing features
(prompt, context and expected output tokens, analysis): the log world model
(pipeline/world) computes its simulated tasks with them too, so both describe one world.
They are written to be cheap for that: the schema text is built once per field, the
analysis once per course, and the context is measured, not copied.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.generator.plan import METADATA_FIELDS, AnalysisResult, Brief
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


def tokens_of_chars(chars: int) -> int:
    """`estimate_tokens` of a text of `chars` characters."""
    return math.ceil(chars / 4)


def compact(value: Any) -> str:
    """Compact JSON, UTF-8 text as is: the prompt's JSON."""
    return orjson.dumps(value).decode()


@functools.cache
def schema_text(field_name: str) -> str:
    """The field's JSON schema as the prompt carries it (built once per field)."""
    return compact(OUTPUTS[field_name].json_schema())


@dataclass
class Task:
    """One field instance of one course. `source[:context_chars]` is its context; `review`
    holds generated content a check task judges (phase 4), `extra` what a phase added."""

    course_id: str
    task_id: str
    field: str
    phase: int
    topic: str
    items: dict[str, str]  # item id -> reference text (the brief)
    source: str
    context_chars: int
    analysis: dict[str, Any]
    analysis_json: str
    expected_output_tokens: int
    review: list[dict[str, str]] = field(default_factory=list)
    review_chars: int = 0  # a check's planned review size (what `router_task` counts)

    @property
    def spec(self) -> OutputSpec:
        return OUTPUTS[self.field]

    @property
    def brief(self) -> str:
        return " ".join(self.items.values())

    @property
    def context(self) -> str:
        return self.source[:self.context_chars]

    def instructions(self, item_ids: list[str], with_review: bool = True) -> str:
        head = compact({"course_id": self.course_id, "task_id": self.task_id,
                        "field": self.field, "topic": self.topic})
        items = compact([{"id": i, "brief": self.items[i]} for i in item_ids])
        review = f',"review":{compact(self.review)}' if self.review and with_review else ""
        task = f'{head[:-1]},"analysis":{self.analysis_json},"items":{items}{review}}}'
        return (f"Write the {self.field.replace('_', ' ')} for this course"
                f"{' (one array item per id)' if self.spec.batched else ''}.\n"
                f"{TASK_MARKER}\n{task}\n"
                f"JSON schema: {schema_text(self.field)}\n")

    def messages(self, item_ids: list[str]) -> list[dict[str, str]]:
        user = f"{self.instructions(item_ids)}{SOURCE_MARKER}\n{self.context}"
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def router_task(self) -> dict[str, Any]:
        """What the router scores: field, token counts, Stage-4 analysis, brief. A check's
        prompt counts its review at the planned size (`review_chars`), not the generated
        text's: the same figure before and after phase 3, in the generator and the world."""
        instructions = self.instructions(list(self.items), with_review=False)
        return {"field": self.field,
                "prompt_tokens": tokens_of_chars(len(SYSTEM_PROMPT) + len(instructions)
                                                 + self.review_chars),
                "context_tokens": tokens_of_chars(self.context_chars),
                "expected_output_tokens": self.expected_output_tokens,
                "analysis": self.analysis, "brief": self.brief}


def expected_tokens(spec: FieldSpec, n_items: int, growth: float) -> int:
    """The expected output of a task: the field's median per item, by items and complexity."""
    return round(spec.output_tokens * n_items * growth)


def planned_review_chars(items: Mapping[str, str], output_tokens: float) -> int:
    """The characters a section review adds to the check's prompt (`,"review":[...]`), for
    reviewed `items` (id -> brief) whose texts run to their expected `output_tokens` each."""
    per_item = [len(i) + len(b) + round(4 * output_tokens) + 30 for i, b in items.items()]
    return sum(per_item) + 11


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
    analysis_json = compact(analysis)
    cid = result.course_id
    source = result.source_material
    growth = 1.0 + 0.3 * float(result.analysis.complexity)

    def task(field: str, ordinal: int, items: dict[str, str], review_chars: int = 0) -> Task:
        spec = fields[field]
        return Task(course_id=cid, task_id=f"{cid}-{field}-{ordinal}", field=field,
                    phase=spec.phase, topic=result.topic, items=items, source=source,
                    context_chars=int(len(source) * spec.context_share), analysis=analysis,
                    analysis_json=analysis_json, review_chars=review_chars,
                    expected_output_tokens=expected_tokens(spec, len(items), growth))

    plan_summary = " ".join(s.brief.objectives[0] for s in result.sections)
    tasks = [task("input_validation", 0, {"plan": f"Course plan for {result.topic}: "
                                                  f"{plan_summary}"})]
    tasks += [task(f, 0, {f: b.text()}) for f, b in _metadata(result).items()]
    for k, section in enumerate(result.sections):
        lessons = {f"s{k}-l{j}": lesson.brief.text() for j, lesson in enumerate(section.lessons)}
        exercises = {f"s{k}-l{j}-e{e}": lesson.brief.text()
                     for j, lesson in enumerate(section.lessons) for e in range(lesson.exercises)}
        review = (planned_review_chars(lessons, fields["lesson_content"].output_tokens * growth)
                  + planned_review_chars(exercises, fields["exercise"].output_tokens * growth))
        tasks += [task("section_title", k, {f"s{k}": section.brief.text()}),
                  task("lesson_content", k, lessons), task("exercise", k, exercises),
                  task("quality_check", k, {f"s{k}-check": f"Quality review of section {k + 1}. "
                                                           f"{section.brief.text()}"}, review)]
    tasks.append(task("min_lessons_check", 0, {"count": (
        f"The course {result.topic} has {result.lesson_count} lessons in "
        f"{len(result.sections)} sections; at least {result.min_lessons} are required.")}))
    return sorted(tasks, key=lambda t: t.phase)
