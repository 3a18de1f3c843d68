"""`router-serve`: build the service from config and run it under uvicorn."""

from __future__ import annotations

import json
import os
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from router_model.cli_errors import user_errors
from router_model.config import CONF_DIR
from router_model.serve.app import CONFIG_ENV, create_app, server_options
from router_model.serve.core import RouterService
from router_model.serve.json_logs import log_config


@hydra.main(config_path=CONF_DIR, config_name="router_serve", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with user_errors("router-serve"):
        serve(OmegaConf.to_container(cfg, resolve=True))


def serve(plain: dict[str, Any]) -> None:
    """Check the settings, then run one process (or uvicorn's workers, each building its
    own service from the same resolved config)."""
    import uvicorn

    service = RouterService.from_config(plain)
    settings = service.settings
    if settings.workers > 1:
        service.close()  # each worker opens its own decision log
        os.environ[CONFIG_ENV] = json.dumps(plain)
        uvicorn.run("router_model.serve.app:app_from_env", factory=True, host=settings.host,
                    port=settings.port, workers=settings.workers, log_level=settings.log_level,
                    **server_options(settings))
        return
    ready = service.readiness()
    print(f"router-serve {ready['replica']} on http://{settings.host}:{settings.port} "
          f"({ready['mode']}, {ready['router_version']}); decisions -> "
          f"{settings.decision_log}", flush=True)
    uvicorn.run(create_app(service), host=settings.host, port=settings.port,
                log_level=settings.log_level, **server_options(settings),
                **log_config(plain))
