"""The Stage-5 generator: phases, the router's escalation loop, attempt logs and resume.

For each task the router picks the start tier; every attempt goes through the schema and
the gate item by item (gating.py), and the router's ladder says what happens next; phases 4
and 5 act on what was generated (phases.py). Every attempt is
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

from pipeline.gate.verifier import Verifier
from pipeline.generator.course import assemble_course
from pipeline.generator.gating import judge_items
from pipeline.generator.llm_client import CallResult, LLMClient
from pipeline.generator.outcomes import (
    PROVIDER_OUTCOMES,
    logged_task_id,
    new_run_id,
    provider_fields,
    provider_step,
)
from pipeline.generator.phases import run_phases
from pipeline.generator.plan import AnalysisResult
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
    gate_versions: list[str] = field(default_factory=list)

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
                 gate: Verifier, settings: GenerateSettings, out_dir: str | Path,
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
        phases = await run_phases(self, result, tasks, state, journal)
        course = assemble_course(result, tasks, state.done, phases)
        course["summary"]["wall_s"] = round(time.perf_counter() - started, 2)
        path = self.out / "courses" / f"{cid}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(course, indent=1))
        return course

    async def run_jobs(self, phase: int, jobs: list[tuple[Task, tuple[str, str] | None]],
                       state: CourseState, journal: AttemptJournal, n_tasks: int) -> None:
        """Run one phase's (task, start override) jobs concurrently and save each result;
        a failure stops the course, resumably."""
        outcomes = await asyncio.gather(*(self._run_and_save(t, state, journal, o)
                                          for t, o in jobs), return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors:
            cid = jobs[0][0].course_id
            raise CourseFailed(
                f"course {cid} stopped in phase {phase} ({PHASES[phase]}): {errors[0]}. "
                f"{len(state.done)}/{n_tasks} fields are finished and saved in "
                f"{state.path}; run the same command again to resume") from errors[0]

    async def _run_and_save(self, task: Task, state: CourseState, journal: AttemptJournal,
                            override: tuple[str, str] | None = None) -> None:
        result = await self.run_task(task, journal, override)
        state.save(result)
        if self.progress is not None and not task.task_id.endswith(("-p4", "-p5")):
            self.progress(task.phase)  # planned tasks: phase 4 and 5 additions have no bar

    # ---- one task through the ladder ---------------------------------------------------

    async def _router(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """In-process calls take microseconds; HTTP ones go to a thread, off the event loop."""
        call = getattr(self.router, method)
        if isinstance(self.router, LocalRouterClient):
            return call(*args, **kwargs)
        return await asyncio.to_thread(call, *args, **kwargs)

    async def _start(self, task: Task, override: tuple[str, str] | None = None) -> _Chain:
        """The router's decision, plus the generator's exploration when it routes by rules;
        `override` (tier, reason): a phase starts the task there (start source `override`)."""
        decision = await self._router("route", task.router_task())
        if override is not None:
            return _Chain(decision=decision, start_tier=override[0], source="override",
                          propensity=1.0, tier=override[0], pending=list(task.items),
                          reason=override[1])
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

    async def run_task(self, task: Task, journal: AttemptJournal,
                       override: tuple[str, str] | None = None) -> FieldResult:
        chain = await self._start(task, override)
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
        """Schema and gate per item (gating.py); keeps each item's best output, accepts the
        items that passed; the attempt passes when every pending item did."""
        chain.attempts += 1
        chain.calls += not call.cached
        chain.cache_hits += call.cached
        chain.cost += call.cost_usd
        chain.latency += call.latency_ms
        if call.error_kind:
            chain.last_error = call.error
            return {"similarity": None, "schema_valid": False, "passed": False,
                    "error_kind": call.error_kind, "raw": None}
        v = await judge_items(task, chain.pending, call, self.gate, self.verdicts)
        chain.cost += v.cost_usd  # a judge's calls, when the scorer makes them
        for i, score in v.scores.items():
            if score > chain.best.get(i, (-1.0, {}))[0]:
                chain.best[i] = (score, v.values[i])
        for i in v.passed_items:
            chain.accepted[i] = (v.scores[i], v.values[i])
        if not v.schema_valid:
            chain.last_error = v.schema_error
        if chain.first_passed is None:
            chain.first_passed = v.passed
        return {"similarity": v.similarity, "schema_valid": v.schema_valid,
                "passed": v.passed, "error_kind": v.error_kind, "raw": v.raw}

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
            gate_raw_score=verdict["raw"], gate_calibrated_score=verdict["similarity"],
            gate_version=self.gate.version, **provider_fields(call, journal.run_id)))

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
            flag_reason=("every tier failed the gate; best attempt kept" if flagged else None),
            gate_versions=[self.gate.version])

