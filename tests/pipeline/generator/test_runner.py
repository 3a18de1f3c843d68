"""The Stage-5 generator against the provider simulator: real HTTP, files and MiniLM."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from omegaconf import OmegaConf

from pipeline.generator.cli import load_inputs, run
from pipeline.generator.inputs import InputError, parse_analysis_result
from pipeline.generator.runner import GenerateSettings
from pipeline.generator.schemas import gate_text, parse_output
from pipeline.generator.tasks import build_tasks
from router_model.config import typed
from router_model.logs.attempts import read_attempts
from tests.helpers import compose_config
from tests.pipeline.generator.helpers import EXAMPLES, generate_config, simulator

KEY = "sim-test-key"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("PROVIDER_SIM_API_KEY", KEY)


def example() -> dict:
    return json.loads((EXAMPLES / "short.json").read_text())


@pytest.mark.parametrize("mutate, path", [
    (lambda d: d["metadata"].pop("course_title"), "$.metadata.course_title"),
    (lambda d: d["analysis"].update(complexity="high"), "$.analysis.complexity"),
    (lambda d: d.update(sections=[]), "$.sections"),
    (lambda d: d["sections"][1]["lessons"][0].update(exercises=float("nan")),
     "$.sections[1].lessons[0].exercises"),
    (lambda d: d["analysis"].update(source_quality=float("nan")),
     "$.analysis.source_quality"),
    (lambda d: d["sections"][0]["brief"].update(objectives=[]),
     "$.sections[0].brief.objectives"),
])
def test_bad_input_names_the_json_path_before_any_llm_call(tmp_path, mutate, path):
    data = example()
    mutate(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))  # NaN is written as the JSON token NaN
    with simulator() as (url, sim):
        cfg = generate_config(tmp_path, url, f"generate.inputs=[{bad}]")
        with pytest.raises(InputError) as err:
            run(cfg)
        assert sim.stats["requests"] == 0
    assert path in str(err.value)
    assert not (tmp_path / "out").exists()


def test_the_examples_are_valid_and_the_long_one_overflows(catalog):
    results = load_inputs([EXAMPLES])
    assert [r.course_id for r in results] == ["example-long", "example-short",
                                              "example-typical"]
    long_tasks = build_tasks(results[0], catalog.fields)
    totals = [t.router_task()["prompt_tokens"] + t.router_task()["context_tokens"]
              for t in long_tasks if t.field == "course_title"]
    assert totals[0] > catalog.gate.context_overflow_tokens
    assert {t.phase for t in long_tasks} == {1, 2, 3, 4, 5}


@pytest.mark.slow
def test_cli_generates_a_course_whose_logs_obey_the_contract(tmp_path, embedder, catalog):
    with simulator(embedder) as (url, sim):
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "course-generate"),
             str(EXAMPLES / "short.json"), f"provider.base_url={url}",
             f"generate.out_dir={tmp_path}/out", "serve.artifact=null",
             f"paths.cache_dir={tmp_path}/cache", "generate.progress=false",
             f"generate.log_dataset={tmp_path}/dataset"],
            capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert sim.stats["completions"] > 0
    course = json.loads((tmp_path / "out/courses/example-short.json").read_text())
    assert course["summary"]["fields"] == 14
    assert course["course"]["title"] and len(course["course"]["sections"]) == 2
    for field in course["fields"].values():
        assert {"tier", "attempts", "similarity", "cost_usd"} <= set(field)
    logs = read_attempts(tmp_path / "out/attempts", known_fields=catalog.fields,
                         known_tiers=catalog.tier_names)
    assert logs.counts["quarantined"] == 0
    assert {t.split("@")[0] for t in logs.frame["task_id"]} == set(course["fields"])
    assert (logs.frame["task_id"] == logs.frame["task_id"].str.split("@").str[0] + "@"
            + logs.frame["run_id"]).all()
    exported = read_attempts(tmp_path / "dataset")  # the same rows, as a partitioned dataset
    assert [p.parent.name.split("=")[0] for p in (tmp_path / "dataset").rglob("*.parquet")] \
        == ["date"]
    assert len(exported.frame) == len(logs.frame)
    decisions = [json.loads(x) for x in (tmp_path / "out/decisions.jsonl").open()]
    assert set(logs.frame["decision_id"]) <= {d["decision"]["decision_id"] for d in decisions}
    assert "this run" in proc.stdout


@pytest.mark.slow
def test_gate_similarity_tracks_the_worlds_quality(embedder, catalog):
    """Requests across tiers and attempts: the real gate vs the world's intended quality."""
    result = parse_analysis_result(json.loads((EXAMPLES / "typical.json").read_text()))
    tasks = build_tasks(result, catalog.fields)
    quality, target, gate = [], [], []
    with simulator(embedder) as (url, _):
        for task in tasks:
            for tier in catalog.ladder:
                ids = list(task.items)
                body = {"model": catalog.tiers[tier].model_id, "messages": task.messages(ids),
                        "seed": 7, "response_format": {"type": "json_schema", "json_schema": {
                            "name": task.field, "schema": task.spec.json_schema()}}}
                r = httpx.post(f"{url}/chat/completions", json=body, timeout=120,
                               headers={"authorization": f"Bearer {KEY}"})
                parsed = parse_output(task.spec, r.json()["choices"][0]["message"]["content"],
                                      ids)
                valid = [i for i in ids if parsed[i].value]
                if not valid:
                    continue
                sims = embedder.similarity([gate_text(parsed[i].value) for i in valid],
                                           [task.items[i] for i in valid])
                quality.append(float(r.headers["x-simulator-quality"]))
                target.append(float(r.headers["x-simulator-target"]))
                gate.append(float(np.mean(sims)))
    r_quality = np.corrcoef(quality, gate)[0, 1]
    r_target = np.corrcoef(target, gate)[0, 1]
    r_world = np.corrcoef(quality, target)[0, 1]  # the world's own gate noise: the ceiling
    mae = float(np.mean(np.abs(np.array(target) - np.array(gate))))
    print(f"\nn={len(gate)} corr(gate, world quality)={r_quality:.3f} (the world's own "
          f"similarity reaches {r_world:.3f}) corr(gate, world similarity)={r_target:.3f} "
          f"MAE vs world similarity={mae:.4f}")
    assert len(gate) >= 60
    assert r_target > 0.9 and mae < 0.03
    assert r_quality > 0.85 * r_world


def test_rate_limited_tiers_fall_back_to_the_second_provider(tmp_path, embedder):
    with simulator(embedder, faults={"rate_limit": 1.0}, retry_after_s=0.01) as (url, _), \
            simulator(embedder) as (fallback, fb_sim):
        cfg = generate_config(tmp_path, url, "provider.retry.attempts_per_deployment=2",
                              f"provider.fallback.base_url={fallback}")
        summary = run(cfg, load_inputs([EXAMPLES / "short.json"]), embedder)
        assert fb_sim.stats["completions"] >= 14
    assert summary["total"]["failed"] == 0
    logs = read_attempts(tmp_path / "out/attempts").frame
    assert set(logs["provider"]) == {"simulator-b"}
    # Rate limits never escalated: each attempt's tier is its chain's start, none retried.
    assert set(logs["error_kind"]) <= {"none", "schema", "low_similarity",
                                       "severe_similarity"}
    # The first calls retried on the rate-limited deployment, then its cooldown opened and
    # later calls went straight to the second one.
    assert logs["provider_retries"].iloc[0] >= 1 and (logs["provider_retries"] == 0).any()


def test_the_response_cache_answers_a_repeated_run(tmp_path, embedder):
    with simulator(embedder) as (url, sim):
        cfg = generate_config(tmp_path, url, "provider.cache=true", "generate.fresh=true")
        first = run(cfg, load_inputs([EXAMPLES / "short.json"]), embedder)
        served = sim.stats["completions"]
        second = run(cfg, load_inputs([EXAMPLES / "short.json"]), embedder)
        assert sim.stats["completions"] == served  # nothing reached the provider
    assert second["response_cache_hit_rate"] == 1.0
    assert second["provider_calls"] == 0
    assert second["total"]["cost_usd_per_course"] == first["total"]["cost_usd_per_course"]
    assert first["response_cache_hit_rate"] == 0.0


def test_the_router_over_http_gives_the_decisions_in_the_logs(tmp_path, embedder):
    import threading

    import uvicorn

    from pipeline.provider_sim.cli import free_port
    from router_model.serve.app import create_app
    from router_model.serve.core import RouterService

    serve_cfg = compose_config("router_serve", [f"serve.decision_log={tmp_path}/served.jsonl",
                                                "serve.artifact=null", "serve.reload_poll_s=0"])
    OmegaConf.resolve(serve_cfg)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(RouterService.from_config(serve_cfg)),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        with simulator(embedder) as (url, _):
            cfg = generate_config(tmp_path, url, f"router.url=http://127.0.0.1:{port}")
            summary = run(cfg, load_inputs([EXAMPLES / "short.json"]), embedder)
    finally:
        server.should_exit = True
        thread.join(30)  # a clean shutdown writes the queued decisions
    assert summary["total"]["failed"] == 0
    served = {json.loads(x)["decision"]["decision_id"]
              for x in (tmp_path / "served.jsonl").open()}
    logged = set(read_attempts(tmp_path / "out/attempts").frame["decision_id"])
    assert len(logged) == 14 and logged <= served
    local = tmp_path / "out/decisions.jsonl"  # the rules fallback's log: never used here
    assert not local.exists() or local.read_text() == ""


def test_a_partly_valid_batch_regenerates_only_its_invalid_items(tmp_path, embedder, catalog):
    from pipeline.generator.gate import BatchingGate
    from pipeline.generator.llm_client import CallResult
    from pipeline.generator.runner import AttemptJournal, Generator
    from pipeline.provider_sim.server import parse_task
    from router_model.serve.client import LocalRouterClient
    from router_model.serve.core import RouterService

    class ScriptedProvider:
        """Answers each lesson with its own brief; the first answer breaks one item."""

        def __init__(self) -> None:
            self.asked: list[list[str]] = []

        async def complete(self, tier, messages, **_):
            items = parse_task(messages)["items"]
            self.asked.append([i["id"] for i in items])
            lessons = [{"id": i["id"], "title": "Lesson", "content": i["brief"]} for i in items]
            if len(self.asked) == 1:
                del lessons[1]["content"]
            return CallResult(json.dumps({"lessons": lessons}), "stop", 100, 100, 0.001, 1.0,
                              "scripted")

    cfg = generate_config(tmp_path, "http://unused")
    result = parse_analysis_result(json.loads((EXAMPLES / "typical.json").read_text()))
    settings = typed(GenerateSettings, cfg.generate, "generate")  # as course-generate does
    task = next(t for t in build_tasks(result, catalog.fields) if t.field == "lesson_content")
    provider = ScriptedProvider()
    generator = Generator(catalog, LocalRouterClient(RouterService.from_config(cfg)), provider,
                          BatchingGate(embedder), settings, tmp_path / "out")
    journal = AttemptJournal(tmp_path / "out/attempts/x.jsonl")
    field = asyncio.run(generator.run_task(task, journal))
    ids = list(task.items)
    assert provider.asked == [ids, [ids[1]]]
    assert set(field.items) == set(ids) and field.passed and field.attempts == 2
    rows = read_attempts(tmp_path / "out/attempts").frame
    assert list(rows["error_kind"]) == ["schema", "none"]
    assert list(rows["escalation_reason"].fillna("")) == ["", "schema_error"]


def test_the_simulator_streams_server_sent_events_the_sdk_reads(embedder, catalog):
    import openai

    result = parse_analysis_result(example())
    task = build_tasks(result, catalog.fields)[1]
    with simulator(embedder) as (url, _):
        client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)
        stream = client.chat.completions.create(
            model=catalog.tiers["gpt-oss-20b"].model_id, messages=task.messages(list(task.items)),
            stream=True, seed=3, response_format={"type": "json_schema", "json_schema": {
                "name": task.field, "schema": task.spec.json_schema()}})
        chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert parse_output(task.spec, content, list(task.items))[next(iter(task.items))].value
    assert chunks[-1].usage.completion_tokens > 0
