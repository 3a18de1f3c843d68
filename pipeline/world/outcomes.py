"""Every tier's outcome on every attempt of every task: the counterfactual outcome cube.

Quality, schema validity, cost and latency per (task, tier, attempt), and the score the gate
sees: drawn from the gate's measured error at that quality (`gate_error`, a table measured
by running the real gate on the provider simulator's text; a batch scores as its worst
item), plus any extra noise (`noise.gate_sd`), and in the `noisy_gate` world outright flips.
Without a table (`simulate.gate_error: null`) the score is quality plus `gate_sd` noise.
The quality formulas work on scalars and arrays alike: the provider simulator
(pipeline/provider_sim) applies them to one request at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipeline.world.draws import fast_normal, scaled_normal
from pipeline.world.gate_error import batch_minimum_levels, language_group, read_table
from pipeline.world.settings import Interactions, Noise, QualityCurve, TierWorld, WorldSettings
from router_model.config import Catalog, ConfigError
from router_model.decide.gate import Gate, flip_mask
from router_model.decide.replay import OutcomeCube

# Rows per block of a tier's arithmetic: its temporaries stay small (in cache, and reused by
# the allocator) where whole-table ones cost fresh pages, mostly kernel time, at 100k courses.
BLOCK_ROWS = 1 << 16


def quality_base(q: QualityCurve, tier: TierWorld, difficulty: Any, language_offset: Any
                 ) -> tuple[Any, Any]:
    """(margin, expected true quality) of a tier on a task, before per-attempt noise."""
    margin = tier.skill - difficulty - tier.language_gap * language_offset
    return margin, q.floor + (q.ceiling - q.floor) / (1.0 + np.exp(-q.slope * margin))


def schema_error_probability(tier: TierWorld, structure: Any, margin: Any) -> Any:
    """Cheaper tiers break the schema more, and more on strict fields and hard tasks."""
    return np.clip(tier.schema_error * structure * np.exp(np.maximum(-margin, 0)), 0, 0.9)


def tier_penalty(inter: Interactions, tier: str, tasks: pd.DataFrame) -> np.ndarray:
    """A tier's extra difficulty where a domain meets an audience level (e.g. the cheap model
    on expert mathematics): the best start depends on features within a field."""
    spec = inter.tier_domain_audience.get(tier)
    if spec is None:
        return np.zeros(len(tasks))
    hit = (tasks["domain"].isin(spec.domains)
           & tasks["audience_level"].isin(spec.audiences)).to_numpy()
    return spec.penalty * hit


def gate_flips(noise: Noise, similarity: np.ndarray, quality: np.ndarray,
               threshold: np.ndarray, severe: float, rng: np.random.Generator) -> np.ndarray:
    """The `noisy_gate` world: the gate passes a truly failing output (similarity just above
    the threshold) or fails a truly passing one (just below), at the configured rates."""
    fp, ff = noise.gate_false_pass, noise.gate_false_fail
    if not (fp or ff):
        return similarity
    thr = threshold[:, None, None]
    truth = quality >= thr
    flip = flip_mask(truth, fp, ff, rng)
    above = thr + rng.uniform(0.0, 0.05, truth.shape)
    below = severe + (thr - severe) * rng.uniform(0.0, 1.0, truth.shape)
    return np.where(flip, np.where(truth, below, np.minimum(above, 1.0)), similarity)


def gate_scores(world: WorldSettings, tasks: pd.DataFrame, quality: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """The score the gate gives every attempt: the measured table's draw at the attempt's
    quality (a batch: its worst item), plus `gate_sd` noise; quality plus noise without a
    table."""
    similarity = fast_normal(rng, world.noise.gate_sd, quality.shape)
    table = read_table(world.gate_error)
    if table is None:
        similarity += quality
    else:
        levels = batch_minimum_levels(rng.random(quality.shape),
                                      tasks["batch_size"].to_numpy(float)[:, None, None])
        groups = tasks["language"].map(language_group)
        for (field, group), rows in tasks.groupby([tasks["field"], groups]).indices.items():
            similarity[rows] += table.scores(str(field), quality[rows], levels[rows], group)
    np.clip(similarity, 0.0, 1.0, out=similarity)  # in place: the cube's largest arrays
    return similarity


def field_thresholds(catalog: Catalog, fields: pd.Series) -> np.ndarray:
    """Each task's pass threshold, looked up once per distinct field rather than per task."""
    codes, names = pd.factorize(fields)
    return Gate.from_catalog(catalog).pass_thresholds(list(names), len(names))[codes]


def _tier_draws(rng: np.random.Generator, draws: dict[str, np.ndarray]) -> None:
    """One tier's random numbers for every task and attempt, in the world's draw order
    (attempt noise, off-topic, off-topic quality, schema), into buffers reused across tiers."""
    rng.standard_normal(out=draws["noise"])
    rng.random(out=draws["off_topic"])
    draws["topic_quality"] = rng.uniform(0.2, 0.6, draws["noise"].shape)
    rng.random(out=draws["schema"])


def _tier_block(world: WorldSettings, catalog: Catalog, j: int, rows: slice,
                task: Mapping[str, np.ndarray], draws: Mapping[str, np.ndarray],
                out: Mapping[str, np.ndarray]) -> None:
    """Tier j's outcomes for one block of tasks, written into the cube: the same arithmetic,
    element by element, as on the whole table."""
    name = catalog.tier_names[j]
    t = world.tiers[name]
    margin, base = quality_base(world.quality, t, task["difficulty"][rows], task["lang"][rows])
    quality = scaled_normal(draws["noise"][rows], world.noise.attempt_sd)
    quality += base[:, None]
    # Rare off-topic outputs: similarity collapses whatever the task's difficulty.
    np.copyto(quality, draws["topic_quality"][rows], where=draws["off_topic"][rows] < t.off_topic)
    np.clip(quality, 0.0, 1.0, out=out["quality"][rows, j, :])
    p_err = schema_error_probability(t, task["structure"][rows], margin)
    np.greater_equal(draws["schema"][rows], p_err[:, None], out=out["schema_valid"][rows, j, :])
    completion = np.maximum(np.round(task["expected_out"][rows] * t.completion_scale), 1)
    tier = catalog.tiers[name]
    out["completion"][rows, j] = completion
    out["call_cost"][rows, j] = tier.call_cost(task["prompt_total"][rows], completion)
    out["gate_cost"][rows, j] = catalog.gate_cost(completion)
    out["latency"][rows, j] = tier.call_latency_s(completion) + catalog.gate_latency_s()


def draw_outcomes(world: WorldSettings, tasks: pd.DataFrame, catalog: Catalog,
                  rng: np.random.Generator) -> tuple[OutcomeCube, np.ndarray]:
    """Every tier's outcome for every attempt (the cube) and each tier's completion tokens.

    Each tier draws its random numbers for the whole table first (the world's draw order),
    then its arithmetic runs block by block."""
    unknown = [t for t in catalog.tier_names if t not in world.tiers]
    if unknown:
        raise ConfigError(f"simulate.tiers.{unknown[0]} is missing: the world needs its view "
                          "of every tier in conf/tiers (see conf/simulate)")
    n, n_tiers = len(tasks), len(catalog.tier_names)
    n_att = catalog.gate.retries_per_tier + 1
    prompt_total = (tasks["prompt_tokens"] + tasks["context_tokens"]).to_numpy(float)
    task = {"lang": tasks["_language_offset"].to_numpy(), "prompt_total": prompt_total,
            "structure": tasks["_structure"].to_numpy(),
            "expected_out": (tasks["expected_output_tokens"] * tasks["_output_noise"]
                             ).to_numpy(float)}
    shape = (n, n_tiers, n_att)
    out = {"quality": np.empty(shape), "schema_valid": np.empty(shape, dtype=bool),
           **{k: np.empty((n, n_tiers)) for k in ("completion", "call_cost", "gate_cost",
                                                 "latency")}}
    draws = {k: np.empty((n, n_att)) for k in ("noise", "off_topic", "schema")}
    for j, name in enumerate(catalog.tier_names):
        task["difficulty"] = tasks["_difficulty"].to_numpy() + tier_penalty(
            world.interactions, name, tasks)
        _tier_draws(rng, draws)
        for start in range(0, n, BLOCK_ROWS):
            _tier_block(world, catalog, j, slice(start, start + BLOCK_ROWS), task, draws, out)
    quality = out["quality"]
    similarity = gate_scores(world, tasks, quality, rng)
    threshold = field_thresholds(catalog, tasks["field"])
    similarity = gate_flips(world.noise, similarity, quality, threshold,
                            catalog.gate.severe_threshold, rng)
    overflow = prompt_total > catalog.gate.context_overflow_tokens
    cube = OutcomeCube(similarity=similarity, quality=quality,
                       schema_valid=out["schema_valid"], call_cost=out["call_cost"],
                       gate_cost=out["gate_cost"], latency_s=out["latency"],
                       overflow=overflow, pass_threshold=threshold)
    return cube, out["completion"]
