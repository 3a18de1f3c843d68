"""Courses -> tasks -> outcome cube, all from one seeded generator: the same settings give
the same world, bit for bit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.world.outcomes import draw_outcomes
from pipeline.world.settings import WorldSettings
from pipeline.world.tasks import expand_tasks, simulate_courses
from router_model.config import Catalog
from router_model.decide.replay import OutcomeCube


@dataclass
class SimulatedWorld:
    """Tasks (one row per field instance), their outcome cube and the hidden difficulty."""

    tasks: pd.DataFrame
    cube: OutcomeCube
    completion_tokens: np.ndarray  # (n, T)


def _task_ids(tasks: pd.DataFrame) -> pd.Series:
    """course id + "-<field>-<ordinal>": the suffix is composed once per distinct (field,
    ordinal), so each task costs one string join instead of four and no int formatting."""
    codes, fields = pd.factorize(tasks["field"])
    ordinal = tasks["ordinal"].to_numpy()
    width = int(ordinal.max()) + 1
    suffixes = pd.array([f"-{f}-{o}" for f in fields for o in range(width)], dtype="str")
    return tasks["course_id"] + pd.Series(suffixes.take(codes * width + ordinal))


def simulate_world(world: WorldSettings, catalog: Catalog, n_courses: int | None = None,
                   seed: int | None = None) -> SimulatedWorld:
    """Courses -> tasks -> outcome cube; `n_courses` and `seed` replace the settings' own."""
    seed = world.seed if seed is None else int(seed)
    n_courses = world.n_courses if n_courses is None else int(n_courses)
    if n_courses < 1:
        raise ValueError(f"simulate.n_courses={n_courses} must be >= 1")
    rng = np.random.default_rng(seed)
    courses = simulate_courses(world, n_courses, rng)
    tasks = expand_tasks(world, courses, catalog, rng)
    cube, completion = draw_outcomes(world, tasks, catalog, rng)
    prefix = f"c{seed % 100000:05d}"
    course_ids = pd.array([f"{prefix}-{i:06d}" for i in range(n_courses)], dtype="str")
    tasks["course_id"] = course_ids.take(tasks["course_index"].to_numpy())
    tasks["task_id"] = _task_ids(tasks)
    return SimulatedWorld(tasks=tasks, cube=cube, completion_tokens=completion)
