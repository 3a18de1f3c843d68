"""A real router-gateway on loopback in front of a real provider simulator, for tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from pipeline.gateway.app import create_gateway_app
from pipeline.gateway.cli import build_gateway
from pipeline.gateway.service import Gateway
from pipeline.generator.inputs import load_analysis_result
from pipeline.generator.tasks import Task, build_tasks
from pipeline.provider_sim.cli import serve_app_in_thread
from tests.helpers import compose_config, tmp_paths
from tests.pipeline.generator.helpers import EXAMPLES

KEY = "sim-key-gw"


def example_tasks(catalog: Any) -> dict[str, Task]:
    """The typical example's tasks by field (first of each)."""
    tasks = build_tasks(load_analysis_result(EXAMPLES / "typical.json"), catalog.fields)
    out: dict[str, Task] = {}
    for t in tasks:
        out.setdefault(t.field, t)
    return out


def routing(task: Task, **extra: Any) -> dict[str, Any]:
    """The `stage5` routing block for a generator task (extra_body={"stage5": ...})."""
    return {"field": task.field, "analysis": task.analysis, "reference": task.brief, **extra}


@contextlib.contextmanager
def gateway(tmp: Path, provider_url: str, embedder: Any = None, *overrides: str
            ) -> Iterator[tuple[str, Gateway]]:
    """(base URL ending /v1, gateway) on a free port."""
    cfg = compose_config("router_gateway", [
        *tmp_paths(tmp), f"provider.base_url={provider_url}", "provider.fallback.base_url=null",
        "provider.api_key_env=GW_PROVIDER_KEY", "provider.retry.backoff_s=0.01",
        "serve.artifact=null", "serve.reload_poll_s=0", "gateway.embedding_cache=null",
        *overrides])
    gw = build_gateway(OmegaConf.to_container(cfg, resolve=True))
    if embedder is not None:
        gw.judge._embedder = embedder
    url, server = serve_app_in_thread(create_gateway_app(gw), wait_s=30)
    try:
        yield url, gw
    finally:
        server.should_exit = True
