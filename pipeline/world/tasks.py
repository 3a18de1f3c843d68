"""Courses (the Stage-4 analysis) and their Stage-5 tasks: token counts and difficulty.

The difficulty formulas work on scalars and arrays alike: the provider simulator
(pipeline/provider_sim) applies them to one request at a time, so both draw one world.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipeline.world.draws import fast_normal, summed_uniform_ints, uniform_ints, weighted_choice
from pipeline.world.settings import CourseMix, Interactions, WorldSettings
from router_model.config import Catalog


def observable_difficulty(c: CourseMix, domain_offset: Any, audience_offset: Any,
                          complexity: Any, completeness: Any) -> Any:
    """Course difficulty a router can see: category offsets plus complexity/completeness."""
    return (domain_offset + audience_offset + c.complexity_weight * (complexity - 0.4)
            - c.completeness_weight * (completeness - 0.75))


def task_difficulty(base: Any, sensitivity: Any, observable: Any, total_tokens: Any,
                    batch: Any, batch_difficulty: float, course_hidden: Any,
                    task_noise: Any) -> Any:
    """Field base + sensitivity x course difficulty + size and batch terms + hidden effects."""
    return (base + sensitivity * observable + 0.1 * np.log(total_tokens / 10_000.0)
            + batch_difficulty * (batch - 1.0) + course_hidden + task_noise)


def simulate_courses(world: WorldSettings, n_courses: int, rng: np.random.Generator
                     ) -> pd.DataFrame:
    """One row per course: the Stage-4 analysis plus its hidden difficulty."""
    c = world.courses
    domain, d_off = weighted_choice(rng, c.domains, n_courses)
    audience, a_off = weighted_choice(rng, c.audience_levels, n_courses)
    language, l_off = weighted_choice(rng, c.languages, n_courses)
    complexity = rng.beta(*c.complexity_beta, size=n_courses)
    completeness = rng.beta(*c.completeness_beta, size=n_courses)
    sections = uniform_ints(rng, c.sections, n_courses)
    lessons_per = uniform_ints(rng, c.lessons_per_section, n_courses)
    objectives = uniform_ints(rng, c.objectives, n_courses)
    source = np.round(c.source_tokens_median
                      * np.exp(fast_normal(rng, c.source_tokens_sigma, n_courses)))
    observable = observable_difficulty(c, d_off, a_off, complexity, completeness)
    hidden = fast_normal(rng, world.noise.course_sd, n_courses)
    return pd.DataFrame({
        "course_index": np.arange(n_courses),
        "domain": domain, "audience_level": audience, "language": language,
        "complexity": complexity.round(4), "analysis_completeness": completeness.round(4),
        "section_count": sections, "lesson_count": sections * lessons_per,
        "objective_count": objectives, "source_tokens": source.astype(np.int64),
        "_language_offset": l_off, "_observable_difficulty": observable,
        "_hidden_difficulty": hidden,
    })


def _batch_sizes(world: WorldSettings, items: str | None, lessons: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Items per task: Phase-3 fields are generated one batch per section, `items` says what
    is batched (a section's lessons, or exercises drawn per lesson)."""
    if items == "lessons":
        return lessons
    if items == "exercises":
        return summed_uniform_ints(rng, world.courses.exercises_per_lesson, lessons)
    return np.ones(lessons.size, dtype=np.int64)


def _field_instances(world: WorldSettings, courses: pd.DataFrame, catalog: Catalog,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Course index, field code (position in the world's fields), ordinal and batch size of
    every field instance, field by field in config order: the order the exercise counts are
    drawn."""
    sections = courses["section_count"].to_numpy()
    lessons_per_section = courses["lesson_count"].to_numpy() // np.maximum(sections, 1)
    per_course_counts = {"course": np.ones(len(courses), dtype=np.int64), "section": sections}
    parts = []
    for code, (name, f) in enumerate(world.fields.items()):
        if name not in catalog.fields:
            raise ValueError(f"simulate.fields.{name} is not a field in conf/fields")
        counts = per_course_counts[f.per]
        course_idx = np.repeat(np.arange(len(courses)), counts)
        parts.append({
            "course_index": course_idx, "field": np.full(course_idx.size, code),
            "ordinal": np.arange(course_idx.size) - np.repeat(np.cumsum(counts) - counts, counts),
            "batch_size": _batch_sizes(world, f.items, lessons_per_section[course_idx], rng),
        })
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _task_order(rows: Mapping[str, np.ndarray], names: list[str], phase: np.ndarray
                ) -> np.ndarray:
    """Tasks by course, phase, field name and ordinal: the order generation runs in.

    One mixed-radix key (no two instances share it): a stable sort of it finds the rows'
    runs (each field's rows are already by course) and is ~10x faster than a lexsort."""
    rank = np.argsort(np.argsort(np.array(names)))
    code, ordinal = rows["field"], rows["ordinal"]
    key = rows["course_index"] * (int(phase.max()) + 1) + phase[code]
    key = (key * len(names) + rank[code]) * (int(ordinal.max()) + 1) + ordinal
    return np.argsort(key, kind="stable")


def _briefs(courses: pd.DataFrame, names: list[str], code: np.ndarray, course_idx: np.ndarray
            ) -> pd.Series:
    """Each task's brief, from one text per field and one per course: the same text as
    composing it row by row, but the replacements and number formatting run per field and
    per course, and the two parts are joined once per run of a course's field (the tasks
    are ordered by course and field), then copied to the run's tasks."""
    field_part = pd.array(["Write the " + n.replace("_", " ") for n in names], dtype="str")
    course_part = (" for a " + courses["audience_level"] + " "
                   + courses["domain"].str.replace("_", " ") + " course taught in "
                   + courses["language"] + ", with " + courses["lesson_count"].astype(str)
                   + " lessons.")
    new_run = np.ones(code.size, dtype=bool)
    new_run[1:] = (code[1:] != code[:-1]) | (course_idx[1:] != course_idx[:-1])
    first = np.flatnonzero(new_run)
    per_run = (pd.Series(field_part.take(code[first]))
               + pd.Series(course_part.array.take(course_idx[first])))
    return pd.Series(per_run.array.take(np.cumsum(new_run) - 1))


def expand_tasks(world: WorldSettings, courses: pd.DataFrame, catalog: Catalog,
                 rng: np.random.Generator) -> pd.DataFrame:
    """One row per field instance, with token counts and the task's difficulty.

    Rows are built as arrays and sorted once, and per-field values are taken by index rather
    than merged or looked up per row: token figures from the catalog (conf/fields), the
    rest from the world's own view of each field."""
    names = list(world.fields)
    rows = _field_instances(world, courses, catalog, rng)
    phase = np.array([catalog.fields[n].phase for n in names], dtype=np.int64)
    order = _task_order(rows, names, phase)
    code, course_idx = rows["field"][order], rows["course_index"][order]
    tasks = pd.concat([
        pd.DataFrame({"course_index": course_idx, "field": pd.array(names, dtype="str").take(code),
                      "ordinal": rows["ordinal"][order], "batch_size": rows["batch_size"][order],
                      "phase": phase[code]}),
        courses.drop(columns="course_index").take(course_idx).reset_index(drop=True),
    ], axis=1)

    def per_task(specs: Mapping[str, Any], key: str) -> np.ndarray:
        return np.array([getattr(specs[n], key) for n in names], dtype=float)[code]

    n = len(tasks)
    batch = tasks["batch_size"].to_numpy(float)
    prompt = (per_task(catalog.fields, "prompt_tokens") * (1.0 + 0.3 * (batch - 1.0))
              * np.exp(fast_normal(rng, 0.25, n)))
    prompt += 25.0 * tasks["objective_count"].to_numpy()
    context = (tasks["source_tokens"].to_numpy() * per_task(catalog.fields, "context_share")
               * np.exp(fast_normal(rng, 0.15, n)))
    output = (per_task(catalog.fields, "output_tokens") * batch
              * np.exp(fast_normal(rng, 0.3, n)) * (1.0 + 0.3 * tasks["complexity"].to_numpy()))
    tasks["prompt_tokens"] = np.maximum(1, np.round(prompt)).astype(np.int64)
    tasks["context_tokens"] = np.round(context).astype(np.int64)
    tasks["expected_output_tokens"] = np.maximum(1, np.round(output)).astype(np.int64)
    total = tasks["prompt_tokens"] + tasks["context_tokens"]
    tasks["_difficulty"] = task_difficulty(
        per_task(world.fields, "difficulty"), per_task(world.fields, "sensitivity"),
        tasks["_observable_difficulty"].to_numpy(), total.to_numpy(), batch,
        world.batch_difficulty, tasks["_hidden_difficulty"].to_numpy(),
        fast_normal(rng, world.noise.task_sd, n)
    ) + interaction_difficulty(world.interactions, tasks, total.to_numpy())
    tasks["_structure"] = per_task(world.fields, "structure")
    tasks["brief"] = _briefs(courses, names, code, course_idx)
    return tasks


def interaction_difficulty(inter: Interactions, tasks: pd.DataFrame, total: np.ndarray
                           ) -> np.ndarray:
    """Extra difficulty no single feature (and no per-field table) can express: a
    non-linear token effect and complexity x completeness (the `interactions` world)."""
    extra = np.zeros(len(tasks))
    if inter.token_curve:
        extra += inter.token_curve * np.log(total / 10_000.0) ** 2
    if inter.complexity_x_incompleteness:
        extra += inter.complexity_x_incompleteness * (tasks["complexity"].to_numpy() - 0.4) * (
            0.75 - tasks["analysis_completeness"].to_numpy())
    return extra
