"""A documented world model of Stage-5 generation, used as the embedded default data.

It draws courses (the Stage-4 analysis), expands them into one task per field instance, and
draws every tier's outcome for every attempt: the counterfactual outcome table. It then runs
the seed's rule ladder from the static field assignment (with an optional epsilon of random
start tiers) and writes the attempt logs that policy would have produced.

Every assumption is a config knob in `conf/simulate/default.yaml`, explained in data/README.md.
Everything is drawn from one seeded generator, so the same config gives the same data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from router_model.config import Catalog
from router_model.decide.gate import Gate
from router_model.decide.replay import OutcomeCube, ReplayResult

# The Stage-4 analysis keys the world draws; logs and task tables carry them as analysis.<key>.
ANALYSIS_KEYS = ("domain", "audience_level", "language", "complexity", "analysis_completeness",
                 "section_count", "lesson_count", "objective_count", "source_tokens")


@dataclass
class SimulatedWorld:
    """Tasks (one row per field instance), their outcome cube and the hidden difficulty."""

    tasks: pd.DataFrame
    cube: OutcomeCube
    completion_tokens: np.ndarray  # (n, T)


def _choice(rng: np.random.Generator, table: Mapping[str, Any], size: int
            ) -> tuple[np.ndarray, np.ndarray]:
    names = list(table)
    shares = np.array([float(table[k][0]) for k in names])
    offsets = np.array([float(table[k][1]) for k in names])
    idx = rng.choice(len(names), size=size, p=shares / shares.sum())
    return np.array(names, dtype=object)[idx], offsets[idx]


def _randint(rng: np.random.Generator, bounds: Any, size: int) -> np.ndarray:
    lo, hi = int(bounds[0]), int(bounds[1])
    return rng.integers(lo, hi + 1, size=size)


def _summed_randint(rng: np.random.Generator, bounds: Any, counts: np.ndarray) -> np.ndarray:
    """Row i: the sum of counts[i] uniform integer draws (e.g. exercises over a section's
    lessons). One draw of counts.sum() integers takes the same values from the generator, and
    leaves it in the same state, as one draw per row in row order: the world is unchanged,
    without a Python loop over rows."""
    totals = np.concatenate(([0], np.cumsum(_randint(rng, bounds, int(counts.sum())))))
    ends = np.cumsum(counts)
    return totals[ends] - totals[ends - counts]


def _scaled_normal(z: np.ndarray, sd: float, out: np.ndarray | None = None) -> np.ndarray:
    """Standard normal draws `z` as numpy's normal(0, sd) turns them into values, bit for bit:
    0.0 + sd * z (the added loc makes -0.0 into 0.0)."""
    out = np.multiply(z, sd, out=out)
    out += 0.0
    return out


def _normal(rng: np.random.Generator, sd: float, size: Any) -> np.ndarray:
    """rng.normal(0, sd, size) bit for bit, at half the cost: numpy's normal with scalar
    arguments takes a per-draw path, standard_normal a filling one."""
    draws = rng.standard_normal(size)
    return _scaled_normal(draws, sd, out=draws)


# The world's formulas, on scalars or arrays: shared by the log simulator and the provider
# simulator (pipeline/provider_sim), so both draw from the same world.


def observable_difficulty(c: Mapping[str, Any], domain_offset: Any, audience_offset: Any,
                          complexity: Any, completeness: Any) -> Any:
    """Course difficulty a router can see: category offsets plus complexity/completeness."""
    return (domain_offset + audience_offset + float(c["complexity_weight"]) * (complexity - 0.4)
            - float(c["completeness_weight"]) * (completeness - 0.75))


def task_difficulty(base: Any, sensitivity: Any, observable: Any, total_tokens: Any,
                    batch: Any, batch_difficulty: float, course_hidden: Any,
                    task_noise: Any) -> Any:
    """Field base + sensitivity x course difficulty + size and batch terms + hidden effects."""
    return (base + sensitivity * observable + 0.1 * np.log(total_tokens / 10_000.0)
            + batch_difficulty * (batch - 1.0) + course_hidden + task_noise)


def quality_base(q: Mapping[str, Any], tier: Mapping[str, Any], difficulty: Any,
                 language_offset: Any) -> tuple[Any, Any]:
    """(margin, expected true quality) of a tier on a task, before per-attempt noise."""
    floor, ceiling, slope = float(q["floor"]), float(q["ceiling"]), float(q["slope"])
    margin = float(tier["skill"]) - difficulty - float(tier["language_gap"]) * language_offset
    return margin, floor + (ceiling - floor) / (1.0 + np.exp(-slope * margin))


def schema_error_probability(tier: Mapping[str, Any], structure: Any, margin: Any) -> Any:
    """Cheaper tiers break the schema more, and more on strict fields and hard tasks."""
    return np.clip(float(tier["schema_error"]) * structure * np.exp(np.maximum(-margin, 0)),
                   0, 0.9)


def simulate_courses(cfg: Mapping[str, Any], n_courses: int, rng: np.random.Generator
                     ) -> pd.DataFrame:
    """One row per course: the Stage-4 analysis plus its hidden difficulty."""
    c = cfg["courses"]
    domain, d_off = _choice(rng, c["domains"], n_courses)
    audience, a_off = _choice(rng, c["audience_levels"], n_courses)
    language, l_off = _choice(rng, c["languages"], n_courses)
    complexity = rng.beta(*c["complexity_beta"], size=n_courses)
    completeness = rng.beta(*c["completeness_beta"], size=n_courses)
    sections = _randint(rng, c["sections"], n_courses)
    lessons_per = _randint(rng, c["lessons_per_section"], n_courses)
    objectives = _randint(rng, c["objectives"], n_courses)
    source = np.round(float(c["source_tokens_median"])
                      * np.exp(_normal(rng, float(c["source_tokens_sigma"]), n_courses)))
    observable = observable_difficulty(c, d_off, a_off, complexity, completeness)
    hidden = _normal(rng, float(cfg["noise"]["course_sd"]), n_courses)
    return pd.DataFrame({
        "course_index": np.arange(n_courses),
        "domain": domain, "audience_level": audience, "language": language,
        "complexity": complexity.round(4), "analysis_completeness": completeness.round(4),
        "section_count": sections, "lesson_count": sections * lessons_per,
        "objective_count": objectives, "source_tokens": source.astype(np.int64),
        "_language_offset": l_off, "_observable_difficulty": observable,
        "_hidden_difficulty": hidden,
    })


def _batch_sizes(cfg: Mapping[str, Any], items: str | None, lessons: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Items per task: Phase-3 fields are generated one batch per section, `items` says what
    is batched (a section's lessons, or exercises drawn per lesson)."""
    if items == "lessons":
        return lessons
    if items == "exercises":
        return _summed_randint(rng, cfg["courses"]["exercises_per_lesson"], lessons)
    return np.ones(lessons.size, dtype=np.int64)


def _field_instances(cfg: Mapping[str, Any], courses: pd.DataFrame, catalog: Catalog,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Course index, field code (position in cfg.fields), ordinal and batch size of every
    field instance, field by field in config order: the order the exercise counts are drawn."""
    sections = courses["section_count"].to_numpy()
    lessons_per_section = courses["lesson_count"].to_numpy() // np.maximum(sections, 1)
    per_course_counts = {"course": np.ones(len(courses), dtype=np.int64), "section": sections}
    parts = []
    for code, (name, f) in enumerate(cfg["fields"].items()):
        if name not in catalog.fields:
            raise ValueError(f"simulate.fields.{name} is not a field in conf/fields")
        counts = per_course_counts[f["per"]]
        course_idx = np.repeat(np.arange(len(courses)), counts)
        parts.append({
            "course_index": course_idx, "field": np.full(course_idx.size, code),
            "ordinal": np.arange(course_idx.size) - np.repeat(np.cumsum(counts) - counts, counts),
            "batch_size": _batch_sizes(cfg, f.get("items"), lessons_per_section[course_idx], rng),
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


def expand_tasks(cfg: Mapping[str, Any], courses: pd.DataFrame, catalog: Catalog,
                 rng: np.random.Generator) -> pd.DataFrame:
    """One row per field instance, with token counts and the task's difficulty.

    Rows are built as arrays and sorted once, and per-field and per-course values are taken
    by index rather than merged or looked up per row."""
    names = list(cfg["fields"])
    rows = _field_instances(cfg, courses, catalog, rng)
    phase = np.array([catalog.fields[n].phase for n in names], dtype=np.int64)
    order = _task_order(rows, names, phase)
    code, course_idx = rows["field"][order], rows["course_index"][order]
    tasks = pd.concat([
        pd.DataFrame({"course_index": course_idx, "field": pd.array(names, dtype="str").take(code),
                      "ordinal": rows["ordinal"][order], "batch_size": rows["batch_size"][order],
                      "phase": phase[code]}),
        courses.drop(columns="course_index").take(course_idx).reset_index(drop=True),
    ], axis=1)
    fcfg = pd.DataFrame.from_dict({k: dict(v) for k, v in cfg["fields"].items()}, orient="index")

    def per_task(key: str) -> np.ndarray:
        return fcfg[key].to_numpy(float)[code]

    n = len(tasks)
    batch = tasks["batch_size"].to_numpy(float)
    prompt = (per_task("prompt_tokens") * (1.0 + 0.3 * (batch - 1.0))
              * np.exp(_normal(rng, 0.25, n)))
    prompt += 25.0 * tasks["objective_count"].to_numpy()
    context = (tasks["source_tokens"].to_numpy() * per_task("context_share")
               * np.exp(_normal(rng, 0.15, n)))
    output = (per_task("output_tokens") * batch * np.exp(_normal(rng, 0.3, n))
              * (1.0 + 0.3 * tasks["complexity"].to_numpy()))
    tasks["prompt_tokens"] = np.maximum(1, np.round(prompt)).astype(np.int64)
    tasks["context_tokens"] = np.round(context).astype(np.int64)
    tasks["expected_output_tokens"] = np.maximum(1, np.round(output)).astype(np.int64)
    total = tasks["prompt_tokens"] + tasks["context_tokens"]
    tasks["_difficulty"] = task_difficulty(
        per_task("difficulty"), per_task("sensitivity"),
        tasks["_observable_difficulty"].to_numpy(), total.to_numpy(), batch,
        float(cfg["batch_difficulty"]), tasks["_hidden_difficulty"].to_numpy(),
        _normal(rng, float(cfg["noise"]["task_sd"]), n)
    ) + interaction_difficulty(cfg.get("interactions") or {}, tasks, total.to_numpy())
    tasks["_structure"] = per_task("structure")
    tasks["brief"] = _briefs(courses, names, code, course_idx)
    return tasks


def interaction_difficulty(inter: Mapping[str, Any], tasks: pd.DataFrame, total: np.ndarray
                           ) -> np.ndarray:
    """Extra difficulty no single feature (and no per-field table) can express: a
    non-linear token effect and complexity x completeness (the `interactions` world)."""
    extra = np.zeros(len(tasks))
    curve = float(inter.get("token_curve", 0.0))
    if curve:
        extra += curve * np.log(total / 10_000.0) ** 2
    cross = float(inter.get("complexity_x_incompleteness", 0.0))
    if cross:
        extra += cross * (tasks["complexity"].to_numpy() - 0.4) * (
            0.75 - tasks["analysis_completeness"].to_numpy())
    return extra


def tier_penalty(inter: Mapping[str, Any], tier: str, tasks: pd.DataFrame) -> np.ndarray:
    """A tier's extra difficulty where a domain meets an audience level (e.g. the cheap model
    on expert mathematics): the best start depends on features within a field."""
    spec = (inter.get("tier_domain_audience") or {}).get(tier)
    if not spec:
        return np.zeros(len(tasks))
    hit = (tasks["domain"].isin(list(spec["domains"]))
           & tasks["audience_level"].isin(list(spec["audiences"]))).to_numpy()
    return float(spec["penalty"]) * hit


def gate_flips(noise: Mapping[str, Any], similarity: np.ndarray, quality: np.ndarray,
               threshold: np.ndarray, severe: float, rng: np.random.Generator) -> np.ndarray:
    """The `noisy_gate` world: the gate passes a truly failing output (similarity just above
    the threshold) or fails a truly passing one (just below), at the configured rates."""
    fp, ff = float(noise.get("gate_false_pass", 0.0)), float(noise.get("gate_false_fail", 0.0))
    if not (fp or ff):
        return similarity
    thr = threshold[:, None, None]
    truth = quality >= thr
    flip = np.where(truth, rng.random(truth.shape) < ff, rng.random(truth.shape) < fp)
    above = thr + rng.uniform(0.0, 0.05, truth.shape)
    below = severe + (thr - severe) * rng.uniform(0.0, 1.0, truth.shape)
    return np.where(flip, np.where(truth, below, np.minimum(above, 1.0)), similarity)


def field_thresholds(catalog: Catalog, fields: pd.Series) -> np.ndarray:
    """Each task's pass threshold, looked up once per distinct field rather than per task."""
    codes, names = pd.factorize(fields)
    return Gate.from_catalog(catalog).pass_thresholds(list(names), len(names))[codes]


# Rows per block of a tier's arithmetic: its temporaries stay small (in cache, and reused by
# the allocator) where whole-table ones cost fresh pages, mostly kernel time, at 100k courses.
BLOCK_ROWS = 1 << 16


def _tier_draws(rng: np.random.Generator, draws: dict[str, np.ndarray]) -> None:
    """One tier's random numbers for every task and attempt, in the world's draw order
    (attempt noise, off-topic, off-topic quality, schema), into buffers reused across tiers."""
    rng.standard_normal(out=draws["noise"])
    rng.random(out=draws["off_topic"])
    draws["topic_quality"] = rng.uniform(0.2, 0.6, draws["noise"].shape)
    rng.random(out=draws["schema"])


def _tier_block(cfg: Mapping[str, Any], catalog: Catalog, j: int, rows: slice,
                task: Mapping[str, np.ndarray], draws: Mapping[str, np.ndarray],
                out: Mapping[str, np.ndarray]) -> None:
    """Tier j's outcomes for one block of tasks, written into the cube: the same arithmetic,
    element by element, as on the whole table."""
    name = catalog.tier_names[j]
    t = cfg["tiers"][name]
    margin, base = quality_base(cfg["quality"], t, task["difficulty"][rows], task["lang"][rows])
    quality = _scaled_normal(draws["noise"][rows], float(cfg["noise"]["attempt_sd"]))
    quality += base[:, None]
    # Rare off-topic outputs: similarity collapses whatever the task's difficulty.
    np.copyto(quality, draws["topic_quality"][rows],
              where=draws["off_topic"][rows] < float(t["off_topic"]))
    np.clip(quality, 0.0, 1.0, out=out["quality"][rows, j, :])
    p_err = schema_error_probability(t, task["structure"][rows], margin)
    np.greater_equal(draws["schema"][rows], p_err[:, None], out=out["schema_valid"][rows, j, :])
    completion = np.round(task["expected_out"][rows] * float(t["completion_scale"]))
    tier = catalog.tiers[name]
    out["completion"][rows, j] = completion
    out["call_cost"][rows, j] = tier.call_cost(task["prompt_total"][rows], completion)
    out["gate_cost"][rows, j] = catalog.gate_cost(completion)
    out["latency"][rows, j] = tier.call_latency_s(completion) + catalog.gate_latency_s()


def draw_outcomes(cfg: Mapping[str, Any], tasks: pd.DataFrame, catalog: Catalog,
                  rng: np.random.Generator) -> SimulatedWorld:
    """Every tier's outcome for every attempt: the counterfactual table, as a cube.

    Each tier draws its random numbers for the whole table first (the world's draw order),
    then its arithmetic runs block by block."""
    n, n_tiers = len(tasks), len(catalog.tier_names)
    n_att = catalog.gate.retries_per_tier + 1
    noise = cfg["noise"]
    prompt_total = (tasks["prompt_tokens"] + tasks["context_tokens"]).to_numpy(float)
    task = {"lang": tasks["_language_offset"].to_numpy(), "prompt_total": prompt_total,
            "structure": tasks["_structure"].to_numpy(),
            "expected_out": tasks["expected_output_tokens"].to_numpy(float)}
    shape = (n, n_tiers, n_att)
    out = {"quality": np.empty(shape), "schema_valid": np.empty(shape, dtype=bool),
           **{k: np.empty((n, n_tiers)) for k in ("completion", "call_cost", "gate_cost",
                                                 "latency")}}
    draws = {k: np.empty((n, n_att)) for k in ("noise", "off_topic", "schema")}
    for j, name in enumerate(catalog.tier_names):
        task["difficulty"] = tasks["_difficulty"].to_numpy() + tier_penalty(
            cfg.get("interactions") or {}, name, tasks)
        _tier_draws(rng, draws)
        for start in range(0, n, BLOCK_ROWS):
            _tier_block(cfg, catalog, j, slice(start, start + BLOCK_ROWS), task, draws, out)
    quality = out["quality"]
    similarity = _normal(rng, float(noise["gate_sd"]), shape)
    similarity += quality
    np.clip(similarity, 0.0, 1.0, out=similarity)  # in place: the cube's largest arrays
    threshold = field_thresholds(catalog, tasks["field"])
    similarity = gate_flips(noise, similarity, quality, threshold,
                            catalog.gate.severe_threshold, rng)
    overflow = prompt_total > catalog.gate.context_overflow_tokens
    cube = OutcomeCube(similarity=similarity, quality=quality,
                       schema_valid=out["schema_valid"], call_cost=out["call_cost"],
                       gate_cost=out["gate_cost"], latency_s=out["latency"],
                       overflow=overflow, pass_threshold=threshold)
    return SimulatedWorld(tasks=tasks, cube=cube, completion_tokens=out["completion"])


def _task_ids(tasks: pd.DataFrame) -> pd.Series:
    """course id + "-<field>-<ordinal>": the suffix is composed once per distinct (field,
    ordinal), so each task costs one string join instead of four and no int formatting."""
    codes, fields = pd.factorize(tasks["field"])
    ordinal = tasks["ordinal"].to_numpy()
    width = int(ordinal.max()) + 1
    suffixes = pd.array([f"-{f}-{o}" for f in fields for o in range(width)], dtype="str")
    return tasks["course_id"] + pd.Series(suffixes.take(codes * width + ordinal))


def simulate_world(cfg: Mapping[str, Any], catalog: Catalog, n_courses: int | None = None,
                   seed: int | None = None) -> SimulatedWorld:
    """Courses -> tasks -> outcome cube, all from one seeded generator."""
    rng = np.random.default_rng(int(cfg["seed"] if seed is None else seed))
    n_courses = int(cfg["n_courses"] if n_courses is None else n_courses)
    if n_courses < 1:
        raise ValueError(f"simulate.n_courses={n_courses} must be >= 1")
    courses = simulate_courses(cfg, n_courses, rng)
    tasks = expand_tasks(cfg, courses, catalog, rng)
    world = draw_outcomes(cfg, tasks, catalog, rng)
    prefix = f"c{int(cfg['seed'] if seed is None else seed) % 100000:05d}"
    course_ids = pd.array([f"{prefix}-{i:06d}" for i in range(n_courses)], dtype="str")
    world.tasks["course_id"] = course_ids.take(world.tasks["course_index"].to_numpy())
    world.tasks["task_id"] = _task_ids(world.tasks)
    return world


def _rows(column: pd.Series, index: np.ndarray) -> Any:
    """Rows `index` of a task column. String columns are taken in Arrow: going through a
    numpy object array makes a Python string per row that the frame converts back."""
    if isinstance(column.dtype, pd.StringDtype):
        return column.array.take(index)
    return column.to_numpy()[index]


def attempt_logs(world: SimulatedWorld, result: ReplayResult, catalog: Catalog, *,
                 explored: np.ndarray, propensity: np.ndarray, router_version: str,
                 start_time: str, courses_per_day: float,
                 audited: np.ndarray | None = None) -> pd.DataFrame:
    """Turn a replay trace into attempt-log rows (the flat layout of the log contract).

    `audited` (per course index): courses whose every attempt carries the audit's verdict,
    i.e. the true outcome (schema valid and true quality >= the field's threshold)."""
    trace = result.trace
    if trace is None:
        raise ValueError("attempt_logs needs a replay run with record_trace=True")
    tasks = world.tasks
    ti = trace["task"].to_numpy()
    tier_idx = trace["tier"].to_numpy()
    names = pd.array(catalog.tier_names, dtype="str")
    models = pd.array([catalog.tiers[t].model_id for t in catalog.tier_names], dtype="str")
    sim = trace["similarity"].to_numpy()
    valid = trace["schema_valid"].to_numpy()
    passed = trace["action"].to_numpy() == 0
    kind = Gate.from_catalog(catalog).verdict(sim, valid,
                                              field_thresholds(catalog, tasks["field"])[ti])
    # The reason an attempt happened is the previous attempt's verdict.
    prev_reason = trace.groupby("task")["next_reason"].shift(1)
    overflow = world.cube.overflow[ti]
    first = trace["attempt"].to_numpy() == 1
    reason = prev_reason.where(~first, np.where(overflow, "context_overflow", None))
    source = np.where(overflow, "rules", np.where(explored[ti], "exploration", "rules"))
    prop = np.where(overflow, 1.0, propensity[ti])
    latency_ms = trace["latency_s"].to_numpy() * 1000.0
    # Timestamps: courses start `1/courses_per_day` days apart; attempts follow one another.
    course_start = (pd.Timestamp(start_time)
                    + pd.to_timedelta(tasks["course_index"].to_numpy()[ti] / courses_per_day,
                                      unit="D"))
    elapsed = pd.Series(latency_ms).groupby(tasks["course_index"].to_numpy()[ti]).cumsum()
    frame = pd.DataFrame({
        "schema_version": 1,
        "timestamp": course_start + pd.to_timedelta(elapsed.to_numpy(), unit="ms"),
        "course_id": _rows(tasks["course_id"], ti),
        "task_id": _rows(tasks["task_id"], ti),
        "field": _rows(tasks["field"], ti),
        "phase": tasks["phase"].to_numpy()[ti],
        "attempt": trace["attempt"].to_numpy(),
        "tier": names.take(tier_idx),
        "model": models.take(tier_idx),
        "provider": "simulator",
        "prompt_tokens": tasks["prompt_tokens"].to_numpy()[ti],
        "completion_tokens": world.completion_tokens[ti, tier_idx].astype(np.int64),
        "context_tokens": tasks["context_tokens"].to_numpy()[ti],
        "brief": _rows(tasks["brief"], ti),
        "similarity": sim.round(4),
        "schema_valid": valid,
        "passed": passed,
        "error_kind": kind,
        "cost_usd": trace["cost_usd"].to_numpy(),
        "latency_ms": latency_ms.round(1),
        "decision_id": _rows("dec-" + tasks["task_id"], ti),
        "router_version": router_version,
        "start_source": source,
        "predicted_pass_prob": np.nan,
        "propensity": prop,
        "escalation_reason": reason.to_numpy(),
    })
    course_index = tasks["course_index"].to_numpy()[ti]
    if audited is not None:
        truth = valid & (trace["quality"].to_numpy() >= world.cube.pass_threshold[ti])
        frame["audit_passed"] = pd.array(np.where(audited[course_index], truth, pd.NA),
                                         dtype="boolean")
    for key in ANALYSIS_KEYS:
        frame[f"analysis.{key}"] = _rows(tasks[key], ti)
    return frame


def task_table(world: SimulatedWorld) -> pd.DataFrame:
    """The tasks in the layout routers read (`analysis.<key>` columns), hidden state dropped:
    what `tasks.parquet` holds and what the policy scores."""
    public = world.tasks[[c for c in world.tasks.columns if not c.startswith("_")]]
    return public.rename(columns={k: f"analysis.{k}" for k in ANALYSIS_KEYS}
                         ).reset_index(drop=True)


def outcome_table(world: SimulatedWorld, catalog: Catalog) -> pd.DataFrame:
    """The counterfactual table in long form: task x tier x attempt (attempt fastest)."""
    cube = world.cube
    n, n_tiers, n_att = cube.similarity.shape

    def per_attempt(values: np.ndarray) -> np.ndarray:  # a (task, tier) value on each attempt
        return np.repeat(np.asarray(values).ravel(), n_att)

    return pd.DataFrame({
        "task_id": _rows(world.tasks["task_id"], np.repeat(np.arange(n), n_tiers * n_att)),
        "tier": pd.array(catalog.tier_names, dtype="str").take(
            np.tile(np.repeat(np.arange(n_tiers), n_att), n)),
        "attempt": np.tile(np.arange(1, n_att + 1), n * n_tiers),
        "similarity": cube.similarity.ravel(),
        "quality": cube.quality.ravel(),
        "schema_valid": cube.schema_valid.ravel(),
        "completion_tokens": per_attempt(world.completion_tokens.astype(np.int64)),
        "cost_usd": per_attempt(cube.call_cost),
        "gate_cost_usd": per_attempt(cube.gate_cost),
        "latency_s": per_attempt(cube.latency_s),
    })


COURSE_PATHS = ("ideal", "single_escalation", "metadata_regeneration", "full_escalation",
                "context_overflow")


def course_paths(tasks: pd.DataFrame, result: ReplayResult, catalog: Catalog) -> pd.Series:
    """Classify each course by the worst thing that happened to it (seed's scenarios).

    context_overflow: a task went to the overflow tier; full_escalation: a task climbed or
    jumped to premium from a cheaper start, or was flagged; metadata_regeneration: a metadata
    field needed more than one attempt; single_escalation: a task moved up one tier;
    ideal: none of these (same-tier retries are the "minimal escalation" of the ideal path).
    """
    course = tasks["course_index"].to_numpy()
    metadata = tasks["field"].map(lambda f: catalog.fields[f].kind == "metadata").to_numpy()
    events = pd.DataFrame({
        "course": course,
        "context_overflow": result.start_tier == catalog.tier_index(catalog.gate.overflow_tier),
        "full_escalation": result.reached_premium | result.flagged,
        "metadata_regeneration": metadata & (result.calls > 1),
        "single_escalation": result.escalated,
    }).groupby("course").any()
    path = pd.Series("ideal", index=events.index, dtype=object)
    for name in ("single_escalation", "metadata_regeneration", "full_escalation",
                 "context_overflow"):
        path[events[name].to_numpy()] = name
    return path


def calibration_summary(world: SimulatedWorld, result: ReplayResult, catalog: Catalog
                        ) -> dict[str, Any]:
    """The figures the seed note predicts for the rule policy, measured on this world."""
    tasks = world.tasks
    course = tasks["course_index"].to_numpy()
    per_course_cost = pd.Series(result.cost).groupby(course).sum()
    paths = course_paths(tasks, result, catalog).value_counts(normalize=True)
    first_call = result.accepted & (result.calls == 1)
    by_course = pd.DataFrame({"course": course, "escalated": result.escalated
                              | result.reached_premium | result.flagged,
                              "flagged": result.flagged}).groupby("course").any()
    return {
        "courses": int(tasks["course_index"].nunique()),
        "tasks": len(tasks),
        "attempts": int(result.calls.sum()),
        "cost_per_course_usd": float(per_course_cost.mean()),
        "cost_per_course_p90_usd": float(per_course_cost.quantile(0.9)),
        "first_tier_success": float((~by_course["escalated"]).mean()),
        "final_success": float((~by_course["flagged"]).mean()),
        "task_first_call_success": float(first_call.mean()),
        "task_final_gate_pass_rate": float(result.accepted.mean()),
        "task_final_true_pass_rate": float(result.true_pass.mean()),
        "task_flagged_for_review": float(result.flagged.mean()),
        "calls_per_task": float(result.calls.mean()),
        "overflow_course_share": float(pd.Series(world.cube.overflow).groupby(course).any()
                                       .mean()),
        "course_paths": {p: float(paths.get(p, 0.0)) for p in COURSE_PATHS},
    }
