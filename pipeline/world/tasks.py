"""Courses (the Stage-4 analysis) and their Stage-5 tasks: token counts and difficulty.

A course's tasks and their token counts come from the generator itself: the world writes
each course's analysis_result (`courses.course_results`) and runs the generator's
`build_tasks` on it. The difficulty formulas work on scalars and arrays alike: the provider
simulator (pipeline/provider_sim) applies them to one request at a time, so both draw one
world.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipeline.generator.tasks import build_tasks, course_analysis
from pipeline.world.courses import course_results
from pipeline.world.draws import fast_normal, uniform_ints, weighted_choice
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


def _task_order(course: np.ndarray, code: np.ndarray, ordinal: np.ndarray, names: list[str],
                phase: np.ndarray) -> np.ndarray:
    """Tasks by course, phase, field name and ordinal: the order generation runs in.

    One mixed-radix key (no two instances share it): a stable sort of it is ~10x faster
    than a lexsort."""
    rank = np.argsort(np.argsort(np.array(names)))
    key = course * (int(phase.max()) + 1) + phase[code]
    key = (key * len(names) + rank[code]) * (int(ordinal.max()) + 1) + ordinal
    return np.argsort(key, kind="stable")


# The course's counts as the generator reports them to the router (`course_analysis`): the
# world's draw of learning outcomes is not the generator's objective_count (which adds the
# other metadata briefs' objectives), so the logs carry the generator's.
COURSE_COUNTS = ("section_count", "lesson_count", "objective_count", "source_tokens")

ROW_KEYS = ("course_index", "field", "ordinal", "batch_size", "prompt_tokens",
            "context_tokens", "expected_output_tokens", "brief")


def generator_tasks(world: WorldSettings, courses: pd.DataFrame, course_ids: list[str],
                    catalog: Catalog) -> dict[str, np.ndarray]:
    """Every course's tasks and routing features, computed by the generator's own
    `build_tasks` and `Task.router_task` on the course's analysis_result."""
    code_of = {name: k for k, name in enumerate(world.fields)}
    rows: list[tuple[Any, ...]] = []
    counts: dict[str, list[int]] = {k: [] for k in COURSE_COUNTS}
    for i, result in enumerate(course_results(courses, course_ids, world)):
        analysis = course_analysis(result)
        for key in COURSE_COUNTS:
            counts[key].append(int(analysis[key]))
        for t in build_tasks(result, catalog.fields):
            if t.field not in code_of:
                raise ValueError(f"simulate.fields has no {t.field!r}: the world needs its "
                                 "view of every Stage-5 field the generator writes")
            routed = t.router_task()
            rows.append((i, code_of[t.field], int(t.task_id.rsplit("-", 1)[1]), len(t.items),
                         routed["prompt_tokens"], routed["context_tokens"],
                         routed["expected_output_tokens"], routed["brief"]))
    columns = list(zip(*rows, strict=True))
    out = {k: np.array(v, dtype=np.int64) for k, v in zip(ROW_KEYS[:-1], columns[:-1],
                                                        strict=True)}
    out["brief"] = np.array(columns[-1], dtype=object)
    out.update({f"course_{k}": np.array(v, dtype=np.int64) for k, v in counts.items()})
    return out


def expand_tasks(world: WorldSettings, courses: pd.DataFrame, course_ids: list[str],
                 catalog: Catalog, rng: np.random.Generator) -> pd.DataFrame:
    """One row per field instance, with the generator's token counts and the task's
    difficulty; per-field values are taken by index rather than merged per row."""
    names = list(world.fields)
    rows = generator_tasks(world, courses, course_ids, catalog)
    courses = courses.assign(**{k: rows[f"course_{k}"] for k in COURSE_COUNTS})
    phase = np.array([catalog.fields[n].phase for n in names], dtype=np.int64)
    order = _task_order(rows["course_index"], rows["field"], rows["ordinal"], names, phase)
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
    for key in ("prompt_tokens", "context_tokens", "expected_output_tokens"):
        tasks[key] = rows[key][order]
    tasks["brief"] = pd.array(rows["brief"][order], dtype="str")
    total = tasks["prompt_tokens"] + tasks["context_tokens"]
    tasks["_difficulty"] = task_difficulty(
        per_task(world.fields, "difficulty"), per_task(world.fields, "sensitivity"),
        tasks["_observable_difficulty"].to_numpy(), total.to_numpy(),
        tasks["batch_size"].to_numpy(float), world.batch_difficulty,
        tasks["_hidden_difficulty"].to_numpy(), fast_normal(rng, world.noise.task_sd, n)
    ) + interaction_difficulty(world.interactions, tasks, total.to_numpy())
    tasks["_structure"] = per_task(world.fields, "structure")
    tasks["_output_noise"] = completion_noise(fast_normal(rng, OUTPUT_SD, n))
    return tasks


OUTPUT_SD = 0.3  # log-normal spread of what a model writes around the expected output


def completion_noise(z: Any) -> Any:
    """How much longer or shorter than expected an output comes out (z: standard normal):
    the world and the provider simulator draw output lengths with this one function."""
    return np.exp(z)


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
