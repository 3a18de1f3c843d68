"""The log simulator's world model, applied to one chat-completions request at a time.

Every random draw is keyed by hashes of (simulator seed, course, task, model, request seed),
never by arrival order: the same course on the same seed meets the same hidden difficulty,
and the same (task, tier, attempt) gets the same quality, whatever route led there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.world.outcomes import quality_base, schema_error_probability
from pipeline.world.settings import WorldSettings
from pipeline.world.tasks import observable_difficulty, task_difficulty
from router_model.config import Catalog
from router_model.files import keyed_rng


@dataclass(frozen=True)
class Draw:
    """The world's outcome for one attempt."""

    tier: str
    quality: float  # the world's true quality of this attempt
    target_similarity: float  # quality + the world's gate noise: what the text aims at
    schema_broken: bool
    completion_tokens: int


class RequestWorld:
    """Hidden difficulty and attempt outcomes from `conf/simulate` (the log world); each
    field's output size from the catalog (conf/fields), as in the log world."""

    def __init__(self, world: WorldSettings, catalog: Catalog, seed: int) -> None:
        self.world = world
        self.catalog = catalog
        self.seed = seed
        self.tier_by_model = {t.model_id: t.name for t in catalog.tiers.values()}
        self.tier_by_model.update({t.name: t.name for t in catalog.tiers.values()})

    def tier_of(self, model: str) -> str | None:
        return self.tier_by_model.get(model)

    def knows(self, field: Any) -> bool:
        """Whether the world has a view of this Stage-5 field."""
        return field in self.world.fields

    def _offset(self, table: str, key: Any) -> float:
        entry = getattr(self.world.courses, table).get(str(key))
        return float(entry[1]) if entry is not None else 0.0

    def difficulty(self, task: Mapping[str, Any], total_tokens: int) -> float:
        """The task's difficulty: observable part from its analysis, hidden part by hash."""
        a = task.get("analysis", {})
        f = self.world.fields[task["field"]]
        observable = observable_difficulty(
            self.world.courses, self._offset("domains", a.get("domain")),
            self._offset("audience_levels", a.get("audience_level")),
            float(a.get("complexity", 0.4)), float(a.get("analysis_completeness", 0.75)))
        noise = self.world.noise
        course_hidden = keyed_rng(self.seed, "course", task["course_id"]).normal(
            0.0, noise.course_sd)
        task_noise = keyed_rng(self.seed, "task", task["task_id"]).normal(0.0, noise.task_sd)
        return float(task_difficulty(
            f.difficulty, f.sensitivity, observable, max(total_tokens, 1),
            len(task.get("items", [])) or 1, self.world.batch_difficulty, course_hidden,
            task_noise))

    def draw(self, task: Mapping[str, Any], tier: str, total_tokens: int,
             request_seed: Any) -> Draw:
        """One attempt of `tier` at `task`: quality, gate target, schema, output size."""
        t = self.world.tiers[tier]
        noise = self.world.noise
        language = self._offset("languages", task.get("analysis", {}).get("language"))
        margin, base = quality_base(self.world.quality, t, self.difficulty(task, total_tokens),
                                    language)
        rng = keyed_rng(self.seed, "attempt", task["task_id"], tier, request_seed)
        quality = base + rng.normal(0.0, noise.attempt_sd)
        if rng.random() < t.off_topic:
            quality = rng.uniform(0.2, 0.6)
        quality = float(np.clip(quality, 0.0, 1.0))
        target = float(np.clip(quality + rng.normal(0.0, noise.gate_sd), 0.0, 1.0))
        p_err = schema_error_probability(t, self.world.fields[task["field"]].structure, margin)
        complexity = float(task.get("analysis", {}).get("complexity", 0.4))
        tokens = (float(self.catalog.fields[task["field"]].output_tokens)
                  * max(len(task.get("items", [])), 1)
                  * np.exp(rng.normal(0, 0.3)) * (1.0 + 0.3 * complexity) * t.completion_scale)
        return Draw(tier=tier, quality=quality, target_similarity=target,
                    schema_broken=bool(rng.random() < p_err),
                    completion_tokens=max(int(tokens + 0.5), 1))
