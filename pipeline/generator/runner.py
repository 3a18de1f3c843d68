"""The Stage-5 generator: phases, the router's escalation loop, attempt logs and resume.

For each task the router picks the start tier; every attempt goes through the schema and
the similarity gate, and the router's ladder says what happens next. Every attempt is
appended to the course's attempt log (the contract's JSONL) the moment it ends, and every
finished field to the course's state file, so a killed run resumes without regenerating
finished fields or duplicating log rows.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.generator.gate import BatchingGate
from pipeline.generator.inputs import AnalysisResult
from pipeline.generator.llm_client import CallResult, LLMClient
from pipeline.generator.outcomes import (
    PROVIDER_OUTCOMES,
    logged_task_id,
    new_run_id,
    provider_fields,
    provider_step,
)
from pipeline.generator.schemas import gate_text, parse_output
from pipeline.generator.tasks import Task, build_tasks
from router_model.config import Catalog, check
from router_model.contract import AttemptRecord
from router_model.decide.gate import Gate
from router_model.decide.rules import explore
from router_model.files import keyed_rng, stable_int, text_key
from router_model.serve.client import LocalRouterClient, RouterClient

PHASES = {1: "input validation", 2: "metadata", 3: "sections", 4: "quality validation",
          5: "minimum lessons"}


class CourseFailed(RuntimeError):
    """A course stopped before finishing; its finished fields and logs are kept, and running
    the same command again resumes it."""


@dataclass(frozen=True)
class GenerateSettings:
    """`generate` in config (conf/course_generate.yaml holds the values and what each
    means); built with `config.typed`. Each field's token figures are the catalog's."""

    inputs: list[str]
    out_dir: str
    fresh: bool  # drop saved state and logs of these courses first
    compare_with_rules: bool
    explore_epsilon: float  # random start tiers when the router answers from rules
    max_courses_in_flight: int
    max_attempts_per_task: int
    output_token_factor: float  # max_tokens = factor x expected + 256
    seed: int  # the exploration draw
    log_dataset: str | None
    log_shards: int
    progress: bool
    gate_batch_wait_s: float
    embedding_cache: str | None  # the MiniLM vectors' cache folder; None: memory only

    def __post_init__(self) -> None:
        check(0.0 <= self.explore_epsilon <= 1.0, "generate.explore_epsilon",
              self.explore_epsilon, "must be in [0, 1]")
        for key in ("max_courses_in_flight", "max_attempts_per_task"):
            check(getattr(self, key) >= 1, f"generate.{key}", getattr(self, key), "must be >= 1")
        check(self.output_token_factor > 0, "generate.output_token_factor",
              self.output_token_factor, "must be > 0")
        check(self.log_shards >= 0, "generate.log_shards", self.log_shards, "must be >= 0")
        check(self.gate_batch_wait_s >= 0, "generate.gate_batch_wait_s",
              self.gate_batch_wait_s, "must be >= 0")


@dataclass
class FieldResult:
    """A finished task: its output per item and what it took."""

    task_id: str
    field: str
    phase: int
    items: dict[str, Any]
    item_similarity: dict[str, float]
    tier: str
    start_tier: str
    start_source: str
    decision_id: str
    router_version: str
    attempts: int
    calls: int
    first_attempt_passed: bool
    passed: bool
    flagged: bool
    cost_usd: float
    latency_ms: float
    cache_hits: int = 0
    flag_reason: str | None = None

    @property
    def similarity(self) -> float:
        return float(np.mean(list(self.item_similarity.values())))


class AttemptJournal:
    """One course's attempt log, appended row by row (contract JSONL), crash-safe."""

    def __init__(self, path: Path, run_id: str | None = None) -> None:
        self.path = path
        self.run_id = run_id  # in every logged task id (outcomes.logged_task_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.counts: dict[str, int] = {}
        if path.exists():
            raw = path.read_bytes()
            if raw and not raw.endswith(b"\n"):  # a row torn by a kill: drop it
                raw = raw[: raw.rfind(b"\n") + 1]
                path.write_bytes(raw)
            for line in raw.splitlines():
                task_id = json.loads(line)["task_id"]
                self.counts[task_id] = self.counts.get(task_id, 0) + 1

    def next_attempt(self, task_id: str) -> int:
        self.counts[task_id] = self.counts.get(task_id, 0) + 1
        return self.counts[task_id]

    def append(self, record: AttemptRecord) -> None:
        line = (record.model_dump_json() + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


class CourseState:
    """Finished fields of one course, rewritten atomically after each one."""

    def __init__(self, path: Path, input_hash: str) -> None:
        self.path = path
        self.done: dict[str, FieldResult] = {}
        self.run_id: str | None = new_run_id()
        if path.exists():
            data = json.loads(path.read_text())
            if data["input_hash"] != input_hash:
                raise CourseFailed(f"{path} belongs to a different analysis_result for this "
                                   "course_id; delete it or pass fresh=true to start over")
            self.done = {k: FieldResult(**v) for k, v in data["done"].items()}
            self.run_id = data.get("run_id")  # a run started before run ids: none
        self.input_hash = input_hash

    def save(self, result: FieldResult) -> None:
        self.done[result.task_id] = result
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"input_hash": self.input_hash, "run_id": self.run_id,
                                   "done": {k: asdict(v) for k, v in self.done.items()}}))
        os.replace(tmp, self.path)


@dataclass
class _Chain:
    """The escalation state of one task while it runs."""

    decision: dict[str, Any]
    start_tier: str
    source: str
    propensity: float
    tier: str
    retry: int = 0
    reason: str | None = None
    pending: list[str] = field(default_factory=list)
    best: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    accepted: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    per_tier: dict[str, int] = field(default_factory=dict)
    attempts: int = 0
    calls: int = 0
    cost: float = 0.0
    latency: float = 0.0
    cache_hits: int = 0
    first_passed: bool | None = None
    last_error: str | None = None


class Generator:
    """Runs courses: tasks by phase, each through the router's ladder."""

    def __init__(self, catalog: Catalog, router: RouterClient, llm: LLMClient,
                 gate: BatchingGate, settings: GenerateSettings, out_dir: str | Path,
                 progress: Any = None) -> None:
        self.catalog = catalog
        self.router = router
        self.llm = llm
        self.gate = gate
        self.settings = settings
        self.out = Path(out_dir)
        self.progress = progress
        self.verdicts = Gate.from_catalog(catalog)  # the one gate, as replay and serving run it

    # ---- courses ---------------------------------------------------------------------

    async def run_course(self, result: AnalysisResult, fresh: bool = False) -> dict[str, Any]:
        """Generate (or resume) one course; write its JSON; return it."""
        cid = result.course_id
        started = time.perf_counter()
        input_hash = text_key(result.model_dump_json())
        state_path = self.out / "state" / f"{cid}.json"
        journal_path = self.out / "attempts" / f"{cid}.jsonl"
        if fresh:
            for path in (state_path, journal_path):
                path.unlink(missing_ok=True)
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state = CourseState(state_path, input_hash)
        journal = AttemptJournal(journal_path, state.run_id)
        tasks = build_tasks(result, self.catalog.fields)
        for phase in sorted({t.phase for t in tasks}):
            todo = [t for t in tasks if t.phase == phase and t.task_id not in state.done]
            outcomes = await asyncio.gather(*(self._run_and_save(t, state, journal)
                                              for t in todo), return_exceptions=True)
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            if errors:
                raise CourseFailed(
                    f"course {cid} stopped in phase {phase} ({PHASES[phase]}): {errors[0]}. "
                    f"{len(state.done)}/{len(tasks)} fields are finished and saved in "
                    f"{state_path}; run the same command again to resume") from errors[0]
        course = assemble_course(result, tasks, state.done)
        course["summary"]["wall_s"] = round(time.perf_counter() - started, 2)
        path = self.out / "courses" / f"{cid}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(course, indent=1))
        return course

    async def _run_and_save(self, task: Task, state: CourseState, journal: AttemptJournal
                            ) -> None:
        result = await self.run_task(task, journal)
        state.save(result)
        if self.progress is not None:
            self.progress(task.phase)

    # ---- one task through the ladder ---------------------------------------------------

    async def _router(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """In-process calls take microseconds; HTTP ones go to a thread, off the event loop."""
        call = getattr(self.router, method)
        if isinstance(self.router, LocalRouterClient):
            return call(*args, **kwargs)
        return await asyncio.to_thread(call, *args, **kwargs)

    async def _start(self, task: Task) -> _Chain:
        """The router's decision, plus the generator's exploration when it routes by rules."""
        decision = await self._router("route", task.router_task())
        start, source, propensity = (decision["start_tier"], decision["source"],
                                     float(decision["propensity"]))
        eps = self.settings.explore_epsilon
        ladder = self.catalog.ladder
        if eps > 0 and source == "rules" and start in ladder:
            # The policy's own draw and propensity, from a generator keyed by the task (so
            # the same inputs explore the same tasks whatever the scheduling).
            pick, explored, prop = explore(np.array([ladder.index(start)]),
                                           np.ones((1, len(ladder)), bool), eps,
                                           keyed_rng(self.settings.seed, task.task_id))
            start, propensity = ladder[int(pick[0])], float(prop[0])
            source = "exploration" if explored[0] else source
        overflow = start == self.catalog.gate.overflow_tier
        return _Chain(decision=decision, start_tier=start, source=source,
                      propensity=propensity, tier=start, pending=list(task.items),
                      reason="context_overflow" if overflow else None)

    async def run_task(self, task: Task, journal: AttemptJournal) -> FieldResult:
        chain = await self._start(task)
        while True:
            call = await self._call(task, chain)
            verdict = await self._judge(task, chain, call)
            self._log(task, chain, call, verdict, journal)
            step = await self._next_step(task, chain, call, verdict)
            if step["action"] == "accept":
                for i in chain.pending:
                    chain.accepted[i] = chain.best[i]
                return self._finish(task, chain, flagged=False)
            if (step["action"] == "flag_for_review"
                    or chain.attempts >= self.settings.max_attempts_per_task):
                return self._finish(task, chain, flagged=True)
            chain.pending = [i for i in chain.pending if i not in chain.accepted]
            chain.tier, chain.retry, chain.reason = (step["next_tier"], step["retry_count"],
                                                     step["reason"])

    async def _next_step(self, task: Task, chain: _Chain, call: CallResult,
                         verdict: dict[str, Any]) -> dict[str, Any]:
        """The router's ladder after a gate verdict; after a provider outcome (every
        deployment down, a permanent 4xx) the provider's own step, never the gate's."""
        if call.error_kind in PROVIDER_OUTCOMES:
            return provider_step(self.catalog, chain.tier, call.error_kind, call.error)
        return await self._router(
            "escalate", decision_id=chain.decision["decision_id"], tier=chain.tier,
            similarity=verdict["similarity"], schema_valid=verdict["schema_valid"],
            error_kind=call.error_kind, retry_count=chain.retry, field=task.field)

    async def _call(self, task: Task, chain: _Chain) -> CallResult:
        n_here = chain.per_tier.get(chain.tier, 0)
        chain.per_tier[chain.tier] = n_here + 1
        expected = task.expected_output_tokens * len(chain.pending) / len(task.items)
        return await self.llm.complete(
            chain.tier, task.messages(chain.pending), schema_name=task.field,
            schema=task.spec.json_schema(),
            max_tokens=int(self.settings.output_token_factor * expected) + 256,
            seed=stable_int(task.task_id, chain.tier, n_here))  # reruns ask the same

    async def _judge(self, task: Task, chain: _Chain, call: CallResult) -> dict[str, Any]:
        """Schema per item, then the similarity gate; keeps the best output of each item."""
        chain.attempts += 1
        chain.calls += not call.cached
        chain.cache_hits += call.cached
        chain.cost += call.cost_usd
        chain.latency += call.latency_ms
        if call.error_kind:
            chain.last_error = call.error
            return {"similarity": None, "schema_valid": False, "passed": False,
                    "error_kind": call.error_kind}
        parsed = parse_output(task.spec, call.content, chain.pending)
        valid = [i for i in chain.pending if parsed[i].value is not None]
        sims = await self.gate.similarity([gate_text(parsed[i].value) for i in valid],
                                          [task.items[i] for i in valid])
        threshold = self.verdicts.pass_thresholds([task.field], 1)
        item_passed = self.verdicts.passes(sims, np.ones(len(valid), bool), threshold)
        for i, sim, ok in zip(valid, map(float, sims), item_passed, strict=True):
            if sim > chain.best.get(i, (-1.0, {}))[0]:
                chain.best[i] = (sim, parsed[i].value)
            if ok:
                chain.accepted[i] = (sim, parsed[i].value)
        schema_valid = len(valid) == len(chain.pending)
        similarity = round(float(np.mean(sims)), 4) if valid else None
        if not schema_valid:
            chain.last_error = next(parsed[i].error for i in chain.pending if i not in valid)
        # The attempt as a whole: its mean similarity (none when no item parsed) and schema.
        seen = np.array([np.nan if similarity is None else similarity]), np.array([schema_valid])
        passed = bool(self.verdicts.passes(*seen, threshold)[0])
        if chain.first_passed is None:
            chain.first_passed = passed
        return {"similarity": similarity, "schema_valid": schema_valid, "passed": passed,
                "error_kind": str(self.verdicts.verdict(*seen, threshold)[0])}

    def _log(self, task: Task, chain: _Chain, call: CallResult, verdict: dict[str, Any],
             journal: AttemptJournal) -> None:
        d = chain.decision
        tier = self.catalog.tiers[chain.tier]
        routed = task.router_task()
        task_id = logged_task_id(task.task_id, journal.run_id)
        journal.append(AttemptRecord(
            timestamp=datetime.now(UTC), course_id=task.course_id, task_id=task_id,
            field=task.field, phase=task.phase, attempt=journal.next_attempt(task_id),
            tier=chain.tier, model=tier.model_id, provider=call.provider,
            prompt_tokens=routed["prompt_tokens"], completion_tokens=call.completion_tokens,
            context_tokens=routed["context_tokens"], analysis=task.analysis, brief=task.brief,
            similarity=verdict["similarity"], schema_valid=verdict["schema_valid"],
            passed=verdict["passed"], error_kind=verdict["error_kind"],
            cost_usd=call.cost_usd, latency_ms=round(call.latency_ms, 1),
            decision_id=d["decision_id"], router_version=d["router_version"],
            start_source=chain.source,
            predicted_pass_prob=(d.get("pass_probabilities") or {}).get(chain.tier),
            propensity=chain.propensity, escalation_reason=chain.reason,
            **provider_fields(call, journal.run_id)))

    def _finish(self, task: Task, chain: _Chain, flagged: bool) -> FieldResult:
        missing = [i for i in task.items if i not in chain.accepted and i not in chain.best]
        if missing:
            raise CourseFailed(f"field {task.task_id}: no valid output for {missing} after "
                               f"{chain.attempts} attempts (last error: {chain.last_error})")
        final = {i: chain.accepted.get(i) or chain.best[i] for i in task.items}
        d = chain.decision
        return FieldResult(
            task_id=task.task_id, field=task.field, phase=task.phase,
            items={i: v for i, (_, v) in final.items()},
            item_similarity={i: round(s, 4) for i, (s, _) in final.items()},
            tier=chain.tier, start_tier=chain.start_tier, start_source=chain.source,
            decision_id=d["decision_id"], router_version=d["router_version"],
            attempts=chain.attempts, calls=chain.calls,
            first_attempt_passed=bool(chain.first_passed), passed=not flagged,
            flagged=flagged, cost_usd=chain.cost, latency_ms=chain.latency,
            cache_hits=chain.cache_hits,
            flag_reason=("every tier failed the gate; best attempt kept" if flagged else None))


def assemble_course(result: AnalysisResult, tasks: list[Task], done: dict[str, FieldResult]
                    ) -> dict[str, Any]:
    """The course JSON: the content, each field's provenance, and the course summary."""
    by_field = {t.task_id: done[t.task_id] for t in tasks}

    def value(field_name: str, ordinal: int = 0) -> dict[str, Any]:
        return by_field[f"{result.course_id}-{field_name}-{ordinal}"].items

    sections = []
    for k, section in enumerate(result.sections):
        lessons = value("lesson_content", k)
        exercises = value("exercise", k)
        sections.append({
            "title": value("section_title", k)[f"s{k}"].get("title"),
            "lessons": [{**lessons[f"s{k}-l{j}"],
                         "exercises": [exercises[f"s{k}-l{j}-e{e}"]
                                       for e in range(lesson.exercises)]}
                        for j, lesson in enumerate(section.lessons)],
            "quality_check": value("quality_check", k)[f"s{k}-check"]})
    course = {"title": value("course_title")["course_title"].get("title"),
              "description": value("course_description")["course_description"]
              .get("description"),
              "learning_outcomes": value("learning_outcomes")["learning_outcomes"]
              .get("outcomes"),
              "pedagogical_strategy": value("pedagogical_strategy")["pedagogical_strategy"]
              .get("strategy"),
              "sections": sections}
    fields = {tid: {k: v for k, v in asdict(r).items() if k != "items"}
              | {"similarity": round(r.similarity, 4)} for tid, r in by_field.items()}
    return {"course_id": result.course_id, "topic": result.topic, "course": course,
            "fields": fields, "summary": course_summary(result, list(by_field.values()))}


def course_summary(result: AnalysisResult, fields: list[FieldResult]) -> dict[str, Any]:
    """Cost, calls, first-attempt and final pass, flags and latency of one course."""
    flagged = [f.task_id for f in fields if f.flagged]
    return {
        "fields": len(fields),
        "cost_usd": round(sum(f.cost_usd for f in fields), 6),
        "attempts": sum(f.attempts for f in fields),
        "calls": sum(f.calls for f in fields),
        "cache_hits": sum(f.cache_hits for f in fields),
        "first_attempt_pass": round(float(np.mean([f.first_attempt_passed for f in fields])),
                                    4),
        "final_pass": round(float(np.mean([f.passed for f in fields])), 4),
        "mean_similarity": round(float(np.mean([f.similarity for f in fields])), 4),
        "flagged": flagged,
        "call_latency_s": round(sum(f.latency_ms for f in fields) / 1000.0, 2),  # summed
        "min_lessons_ok": result.lesson_count >= result.min_lessons,
        "router_versions": sorted({f.router_version for f in fields}),
    }
