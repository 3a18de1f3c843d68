"""The world's courses as Stage-4 analysis_result documents.

`course_results` writes, for each course the world drew (`tasks.simulate_courses`), the
analysis_result a Stage-4 run would hand to Stage 5: topic, briefs of every field, sections
and lessons, exercises per lesson, minimum lessons and source material. `course-inputs`
writes them to files for the generator; `router-simulate` turns them into tasks with the
generator's own `build_tasks`, so the logs it simulates and the traffic the generator sends
come from one function.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pandas as pd

from pipeline.generator.plan import (
    Analysis,
    AnalysisResult,
    Brief,
    Lesson,
    Metadata,
    Section,
)
from pipeline.world.settings import WorldSettings
from pipeline.world.topics import FACETS, METHODS, SECOND, STRATEGY_POINTS, TOPICS, fallback_topic

VERBS = ("apply", "explain", "use", "analyse", "compare", "plan work with")


def _brief(objectives: list[str], key_points: list[str]) -> Brief:
    return Brief.model_construct(objectives=objectives, key_points=key_points)


def _metadata(topic: str, audience: str, concepts: list[str], outcomes: int,
              rnd: random.Random) -> Metadata:
    covers = [f"Covers {c}" for c in concepts[:rnd.randint(2, 5)]]
    skills = [f"After the course learners can {VERBS[k % len(VERBS)]} {concepts[k]}"
              for k in range(outcomes)]
    return Metadata.model_construct(
        course_title=_brief([f"Name a course that teaches {topic} to {audience} learners"],
                            [c.capitalize() for c in concepts[:3]]),
        course_description=_brief(
            [f"Describe what learners of {topic} will build and understand",
             "State the prerequisites and the time commitment"], covers),
        learning_outcomes=_brief(skills, ["Outcomes are measurable and use action verbs"]),
        pedagogical_strategy=_brief(
            [f"Teach {topic} through {rnd.choice(METHODS)}", rnd.choice(SECOND)],
            rnd.sample(STRATEGY_POINTS, 2)))


def _sections(concepts: list[str], n_sections: int, per_section: int,
              exercises: tuple[int, int], rnd: random.Random) -> list[Section]:
    out = []
    for k in range(n_sections):
        c = concepts[k % len(concepts)]
        start = "Starts from first principles" if k == 0 else \
            f"Builds on {concepts[(k - 1) % len(concepts)]}"
        lessons = []
        for j in range(per_section):
            sub = FACETS[j % len(FACETS)].format(c=c)
            lessons.append(Lesson.model_construct(brief=_brief(
                [f"Explain {sub} in the context of {c}",
                 f"Show learners how to {VERBS[j % len(VERBS)]} {c} using {sub}"],
                [f"A worked example of {sub}", f"Common mistakes with {sub}"]),
                exercises=rnd.randint(*exercises)))
        out.append(Section.model_construct(
            brief=_brief([f"Introduce {c}", f"Learners {VERBS[k % len(VERBS)]} {c}"],
                         [start]), lessons=lessons))
    return out


def source_material(topic: str, concepts: list[str], chars: int) -> str:
    """`chars` characters of source text about the topic (a paragraph, repeated)."""
    para = (f"{topic}. " + " ".join(f"Notes on {c}: definitions, examples and exercises."
                                   for c in concepts) + "\n")
    return (para * (chars // len(para) + 1))[:chars]


def course_result(row: Any, course_id: str, world: WorldSettings, seed: int
                  ) -> AnalysisResult:
    """One course's analysis_result from its drawn row (`simulate_courses`)."""
    rnd = random.Random(f"{seed}-{course_id}")
    topics = TOPICS.get(str(row.domain))
    topic, concepts = rnd.choice(sorted(topics.items())) if topics else \
        fallback_topic(str(row.domain))
    sections = int(row.section_count)
    per_section = max(int(row.lesson_count) // max(sections, 1), 1)
    lessons = sections * per_section
    low, high = world.courses.exercises_per_lesson
    return AnalysisResult.model_construct(
        course_id=course_id, topic=topic,
        analysis=Analysis.model_construct(
            domain=str(row.domain), audience_level=str(row.audience_level),
            language=str(row.language), complexity=float(row.complexity),
            analysis_completeness=float(row.analysis_completeness)),
        metadata=_metadata(topic, str(row.audience_level), list(concepts),
                           int(row.objective_count), rnd),
        sections=_sections(list(concepts), sections, per_section, (low, high), rnd),
        min_lessons=max(1, lessons - rnd.randint(0, 2)),
        source_material=source_material(topic, list(concepts), 4 * int(row.source_tokens)))


def course_results(courses: pd.DataFrame, course_ids: list[str], world: WorldSettings
                   ) -> Iterator[AnalysisResult]:
    """Every drawn course as an analysis_result, in order."""
    for row, cid in zip(courses.itertuples(index=False), course_ids, strict=True):
        yield course_result(row, cid, world, world.seed)


def as_json(result: AnalysisResult) -> dict[str, Any]:
    """The analysis_result as the JSON a file holds (validated by the generator's reader)."""
    return result.model_dump(mode="json")
