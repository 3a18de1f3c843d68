"""Generator speed: overhead per attempt (router + gate + logging, no provider time) and
courses per minute against the provider simulator at zero and at realistic latency.

    python perf/generator_speed.py [--courses 4] [--skip-throughput]

Prints numbers; asserts nothing. The simulator runs in this process and shares the MiniLM
model (it embeds candidate answers), so at zero latency the machine's CPU is shared by the
simulator and the generator, as it would not be with a real provider.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PROVIDER_SIM_API_KEY", "bench")

from omegaconf import OmegaConf

from pipeline.generator.cli import run
from pipeline.generator.gate import BatchingGate, Embedder
from pipeline.generator.inputs import parse_analysis_result
from pipeline.generator.runner import AttemptJournal
from pipeline.generator.schemas import gate_text, parse_output
from pipeline.generator.tasks import build_tasks
from pipeline.provider_sim.cli import build_simulator
from pipeline.provider_sim.server import parse_task
from router_model.config import Catalog
from router_model.contract import AttemptRecord
from router_model.serve.client import LocalRouterClient
from router_model.serve.core import RouterService
from tests.helpers import compose_config
from tests.pipeline.generator.helpers import generate_config, simulator, synthetic_result


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def overhead(tmp: Path) -> None:
    """Router, gate and logging per attempt, on answers the simulator wrote beforehand."""
    cfg = compose_config("course_generate", [f"serve.decision_log={tmp}/d.jsonl",
                                             "serve.artifact=null"])
    OmegaConf.resolve(cfg)
    catalog = Catalog.from_config(cfg)
    sim = build_simulator(compose_config("provider_sim", ["provider_sim.embedding_cache=null"]),
                          embedder=Embedder())
    result = parse_analysis_result(synthetic_result(0, seed=9, sections=(4, 4)))
    tasks = build_tasks(result, catalog.fields)
    answers = []
    for t in tasks:  # the provider's work, done before the clock starts
        body = {"seed": 1, "response_format": {"json_schema": {"schema": t.spec.json_schema()}}}
        out, _, _ = sim.compose(body, parse_task(t.messages(list(t.items))), "gpt-oss-120b",
                                5000)
        answers.append(json.dumps(out))
    router = LocalRouterClient(RouterService.from_config(cfg))
    journal = AttemptJournal(tmp / "attempts.jsonl")
    cold = Embedder()
    cold.similarity(["warm up"], ["the model"])
    timings: dict[str, list[float]] = {"router": [], "gate_single": [], "log": []}
    parsed_all = []
    for t, answer in zip(tasks, answers, strict=True):
        t0 = time.perf_counter()
        decision = router.route(t.router_task())
        router.escalate(decision_id=decision["decision_id"], tier=decision["start_tier"],
                        similarity=0.8, schema_valid=True, retry_count=0)
        t1 = time.perf_counter()
        parsed = parse_output(t.spec, answer, list(t.items))
        texts = [gate_text(p.value) for p in parsed.values() if p.value]
        refs = [t.items[i] for i, p in parsed.items() if p.value]
        parsed_all.append((texts, refs))
        cold.similarity(texts, refs)
        t2 = time.perf_counter()
        journal.append(AttemptRecord(
            timestamp=datetime.now(UTC), course_id=t.course_id, task_id=t.task_id,
            field=t.field, phase=t.phase, attempt=1, tier=decision["start_tier"],
            model="m", provider="p", prompt_tokens=1, completion_tokens=1, context_tokens=1,
            analysis=t.analysis, brief=t.brief, similarity=0.8, schema_valid=True,
            passed=True, error_kind="none", cost_usd=0.0, latency_ms=1.0,
            decision_id=decision["decision_id"], router_version=decision["router_version"],
            start_source="rules", propensity=1.0))
        t3 = time.perf_counter()
        timings["router"].append(t1 - t0)
        timings["gate_single"].append(t2 - t1)
        timings["log"].append(t3 - t2)
    warm = Embedder()  # steady state: each reference was embedded at its first attempt
    warm.encode([r for _, refs in parsed_all for r in refs])
    for texts, refs in parsed_all:
        start = time.perf_counter()
        warm.similarity(texts, refs)
        timings.setdefault("gate_warm", []).append(time.perf_counter() - start)
    batched = Embedder()
    batched.encode([r for _, refs in parsed_all for r in refs])
    gate = BatchingGate(batched)

    async def all_at_once() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(gate.similarity(o, r) for o, r in parsed_all))
        return time.perf_counter() - start

    batch_total = asyncio.run(all_at_once())
    n = len(tasks)
    items = sum(len(o) for o, _ in parsed_all)
    print(f"overhead per attempt ({n} attempts, {items} gated items; gate_single: nothing "
          f"cached, gate_warm: references cached):")
    for name, values in timings.items():
        print(f"  {name:<12} mean {ms(statistics.mean(values))}  p50 "
              f"{ms(statistics.median(values))}  max {ms(max(values))}")
    print(f"  gate, all {n} attempts batched, references cached: {ms(batch_total / n)} per "
          f"attempt, {ms(batch_total / items)} per item")
    per_attempt = statistics.mean(timings["router"]) + statistics.mean(timings["log"]) \
        + batch_total / n
    print(f"  total with batched gating: {ms(per_attempt)} per attempt (target 15 ms)")


def throughput(tmp: Path, n_courses: int, latency: dict, label: str) -> None:
    courses = [parse_analysis_result(synthetic_result(i, seed=5)) for i in range(n_courses)]
    embedder = Embedder()
    embedder.similarity(["warm up"], ["the model"])
    with simulator(embedder, latency=latency) as (url, _):
        cfg = generate_config(tmp / label, url, "generate.max_courses_in_flight=4",
                              "provider.max_concurrency=8")
        start = time.perf_counter()
        summary = run(cfg, courses, embedder)
        wall = time.perf_counter() - start
    t = summary["total"]
    print(f"{label}: {n_courses} courses in {wall:.1f} s = {60 * n_courses / wall:.2f} "
          f"courses/min ({t['attempts_per_course']} attempts/course, "
          f"{t['failed']} failed; 4 courses in flight, 8 requests per provider)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--courses", type=int, default=4)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        overhead(Path(tmp))
        if not args.skip_throughput:
            throughput(Path(tmp), args.courses, {"mode": "zero"}, "zero latency")
            throughput(Path(tmp), args.courses, {"mode": "lognormal", "p50_s": 2.0,
                                                 "sigma": 0.5}, "p50 2 s latency")


if __name__ == "__main__":
    main()
