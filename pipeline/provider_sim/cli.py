"""`course-provider-sim`: run the provider SIMULATOR on 127.0.0.1 (a stand-in, not an LLM)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline.provider_sim.request_world import RequestWorld
from pipeline.provider_sim.server import ProviderSimulator, create_app, sim_settings
from pipeline.world.settings import world_settings
from router_model.cli_errors import user_errors
from router_model.config import CONF_DIR, Catalog, plain


def build_simulator(cfg: DictConfig, **overrides: Any) -> ProviderSimulator:
    """The simulator from a composed `provider_sim` root config; `overrides` are merged
    onto `provider_sim` (e.g. faults={"rate_limit": 1.0} leaves the other rates as set)."""
    settings = sim_settings(OmegaConf.merge(plain(cfg.provider_sim), overrides))
    catalog = Catalog.from_config(cfg)
    world = RequestWorld(world_settings(cfg.simulate), catalog, settings.seed)
    return ProviderSimulator(settings, world, catalog)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_in_thread(sim: ProviderSimulator, port: int | None = None) -> tuple[str, Any]:
    """Start the simulator under uvicorn in a daemon thread; (base_url ending /v1, server)."""
    return serve_app_in_thread(create_app(sim), port)


def serve_app_in_thread(app: Any, port: int | None = None, wait_s: float = 20.0
                        ) -> tuple[str, Any]:
    """Any ASGI app under uvicorn on loopback in a daemon thread; (base_url ending /v1,
    server). The simulator, and the gateway in front of it in perf/gateway_overhead.py."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", timeout_graceful_shutdown=1))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + wait_s
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError(f"a server did not start within {wait_s:.0f} s")
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}/v1", server


@hydra.main(config_path=CONF_DIR, config_name="provider_sim", version_base="1.3")
def main(cfg: DictConfig) -> None:
    import uvicorn

    OmegaConf.resolve(cfg)
    with user_errors("course-provider-sim"):
        sim = build_simulator(cfg)
        s = sim.settings
        print(f"course-provider-sim: a SIMULATED OpenAI-compatible provider (no LLM) on "
              f"http://{s.host}:{s.port}/v1, seed {s.seed}, faults {s.faults}", flush=True)
        uvicorn.run(create_app(sim), host=s.host, port=s.port, log_level=s.log_level)
