"""The gate's error on the provider simulator's text, measured for the log world model.

For a sample of the world's own courses (the draws `router-simulate` and `course-inputs`
make), every item of every task is written by the provider simulator's writer at each of a
grid of true qualities, then scored by the real gate (scorer, guards, calibration map). The
calibrated scores' quantiles per field, course-language group and quality knot form the table
`router-simulate` draws its gate scores from (pipeline/world/gate_error.py): the world's gate
errors are the ones this gate makes on that text, without embedding anything per attempt.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipeline.gate.scorers import Judged
from pipeline.gate.verifier import Verifier
from pipeline.generator.schemas import gate_text
from pipeline.generator.tasks import build_tasks
from pipeline.provider_sim.writer import write_item
from pipeline.world.courses import course_results
from pipeline.world.gate_error import GateErrorTable, fit_table, language_group
from pipeline.world.settings import WorldSettings
from pipeline.world.simulate import world_course_ids
from pipeline.world.tasks import simulate_courses
from router_model.config import Catalog, check


@dataclass(frozen=True)
class WorldErrorSettings:
    """`calibrate.world_error` (conf/router_gate_calibrate.yaml says what each means)."""

    courses: int
    items_per_cell: int
    knots: list[float]
    probs: list[float]
    seed: int
    out: str | None

    def __post_init__(self) -> None:
        check(self.courses >= 0, "calibrate.world_error.courses", self.courses, "must be >= 0")
        check(sorted(self.knots) == list(self.knots) and len(self.knots) >= 2,
              "calibrate.world_error.knots", self.knots, "need two or more, increasing")
        check(self.probs[0] == 0.0 and self.probs[-1] == 1.0,
              "calibrate.world_error.probs", self.probs, "must run from 0 to 1")


def sample_items(world: WorldSettings, catalog: Catalog, s: WorldErrorSettings
                 ) -> list[dict[str, Any]]:
    """Up to `items_per_cell` items per (field, language group) from the world's courses."""
    world = replace(world, seed=s.seed)
    courses = simulate_courses(world, s.courses, np.random.default_rng(s.seed))
    rnd = random.Random(s.seed)
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in course_results(courses, world_course_ids(s.seed, s.courses), world):
        for t in build_tasks(result, catalog.fields):
            chars = 4 * t.expected_output_tokens // max(len(t.items), 1)
            group = language_group(result.analysis.language)
            for item_id, brief in t.items.items():
                found.setdefault((t.field, group), []).append(
                    {"field": t.field, "group": group, "id": item_id, "brief": brief,
                     "topic": result.topic, "language": result.analysis.language,
                     "chars": chars})
    out = []
    for cell in found.values():
        out += rnd.sample(cell, min(len(cell), s.items_per_cell))
    return out


def written(items: Sequence[dict[str, Any]], knots: Sequence[float], seed: int
            ) -> list[tuple[dict[str, Any], float, Judged]]:
    """Every item written at every knot's quality."""
    out = []
    for n, it in enumerate(items):
        for q in knots:
            rnd = random.Random(f"world-error|{seed}|{n}|{q}")
            obj = write_item(it["field"], it["id"], it["brief"], it["topic"], it["language"],
                             float(q), it["chars"], rnd)
            out.append((it, float(q), Judged(it["field"], gate_text(obj, limit=None),
                                             it["brief"], it["language"])))
    return out


def measure(verifier: Verifier, world: WorldSettings, catalog: Catalog,
            s: WorldErrorSettings, batch: int = 256) -> GateErrorTable:
    """The gate error table of `verifier` on the simulator's text of the world's courses."""
    rows = written(sample_items(world, catalog, s), s.knots, s.seed)

    async def score() -> np.ndarray:
        parts = []
        for start in range(0, len(rows), batch):
            v = await verifier.judge([j for _, _, j in rows[start:start + batch]])
            parts.append(v.calibrated)
        return np.concatenate(parts)

    scores = asyncio.run(score())
    keys = np.array([f"{it['field']}|{it['group']}" for it, _, _ in rows])
    fields = np.array([it["field"] for it, _, _ in rows])
    quality = np.array([q for _, q, _ in rows])
    source = {"courses": s.courses, "seed": s.seed, "items": len(rows) // len(s.knots),
              "texts": len(rows), "measured_by": "router-gate-calibrate"}
    table = fit_table(verifier.version, fields, quality, scores, np.asarray(s.knots),
                      np.asarray(s.probs), source)
    by_group = fit_table(verifier.version, keys, quality, scores, np.asarray(s.knots),
                         np.asarray(s.probs), source)
    return replace(table, fields={**table.fields, **{k: v for k, v in by_group.fields.items()
                                                     if k != "*"}})
