"""What router-gateway adds to an LLM call: the same chat completion sent straight to the
provider simulator and through the gateway, one at a time, in the same run; the gate's own
time (MiniLM similarity to a reference) measured apart, since it is a choice, not overhead.

    .venv/bin/python perf/gateway_overhead.py [--requests 300]

The simulator answers at once (latency mode zero), so the difference is the gateway's own
work: parsing, routing (the demo artifact when it exists, else the rules), the upstream
client, the attempt and decision logs, and the answer.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openai

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "PERF_GATEWAY_KEY"


def _title_task(catalog: Any) -> Any:
    """The typical example's course-title task: the messages the generator would send (the
    simulator reads its task from them, as a real model reads its prompt)."""
    from pipeline.generator.inputs import load_analysis_result
    from pipeline.generator.tasks import build_tasks

    tasks = build_tasks(load_analysis_result(ROOT / "data/examples/typical.json"),
                        catalog.fields)
    return next(t for t in tasks if t.field == "course_title")


def _compose(name: str, overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from router_model.config import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg


def _serve(app: Any) -> tuple[str, Any]:
    from pipeline.provider_sim.cli import serve_app_in_thread

    return serve_app_in_thread(app, wait_s=60)


def _p50_ms(call: Callable[[], Any], n: int) -> float:
    for _ in range(20):  # warm up connections, caches and the first-request paths
        call()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e3)


def _gate_ms(gateway: Any, n: int) -> float:
    """p50 of the gate's similarity on a title-sized output (MiniLM on CPU)."""
    judge = gateway.judge
    judge.similarity("warm up", "warm up")
    times = []
    for i in range(n):
        started = time.perf_counter()
        judge.similarity(f"Python loops from zero, part {i}", "Objectives: loops in Python.")
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e3)


def gateway_figures(requests: int = 300) -> dict[str, Any]:
    """p50 ms of a direct call and of the same call through the gateway, and the gate's."""
    from omegaconf import OmegaConf

    from pipeline.gateway.app import create_gateway_app
    from pipeline.gateway.cli import build_gateway
    from pipeline.provider_sim.cli import build_simulator
    from pipeline.provider_sim.server import create_app

    os.environ[KEY_ENV] = "perf-key"
    artifact = ROOT / "artifacts" / "router"
    with tempfile.TemporaryDirectory() as tmp:
        sim_url, sim_server = _serve(create_app(build_simulator(_compose("provider_sim", [
            "provider_sim.embedding_cache=null", "provider_sim.latency.mode=zero"]))))
        cfg = _compose("router_gateway", [
            f"paths.data_dir={tmp}/data", f"paths.cache_dir={tmp}/cache",
            f"serve.decision_log={tmp}/decisions.jsonl", f"serve.compiled_cache={tmp}",
            f"provider.base_url={sim_url}", "provider.fallback.base_url=null",
            f"provider.api_key_env={KEY_ENV}", "serve.reload_poll_s=0",
            f"serve.artifact={artifact if artifact.exists() else 'null'}"])
        gateway = build_gateway(OmegaConf.to_container(cfg, resolve=True))
        gw_url, gw_server = _serve(create_gateway_app(gateway))
        catalog = gateway.service.catalog
        task = _title_task(catalog)
        tier = catalog.tiers[gateway.service.route(task.router_task())["start_tier"]]
        messages = task.messages(list(task.items))
        direct = openai.OpenAI(api_key="perf-key", base_url=sim_url, max_retries=0)
        routed = openai.OpenAI(api_key="perf-key", base_url=gw_url, max_retries=0)
        try:
            # The direct call as the gateway makes it upstream (streamed), and the gateway
            # called the way a user would call a model, both with the official client.
            direct_ms = _p50_ms(lambda: list(direct.chat.completions.create(
                model=tier.model_id, messages=messages, stream=True,
                stream_options={"include_usage": True})), requests)
            routed_ms = _p50_ms(lambda: routed.chat.completions.create(
                model="stage5-router", messages=messages,
                extra_body={"stage5": {"field": task.field, "analysis": task.analysis}}),
                requests)
            gate = _gate_ms(gateway, requests)
        finally:
            gw_server.should_exit = sim_server.should_exit = True
    return {"direct_p50_ms": direct_ms, "gateway_p50_ms": routed_ms,
            "overhead_p50_ms": routed_ms - direct_ms, "gate_p50_ms": gate,
            "requests": requests,
            "router": "learned (artifacts/router)" if artifact.exists() else "rules"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    print(json.dumps(gateway_figures(parser.parse_args().requests), indent=2))


if __name__ == "__main__":
    main()
