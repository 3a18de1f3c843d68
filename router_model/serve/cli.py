"""`router-serve`: build the service from config and run it under uvicorn."""

from __future__ import annotations

import json
import os

import hydra
from omegaconf import DictConfig, OmegaConf

from router_model.config import CONF_DIR
from router_model.serve.app import CONFIG_ENV, create_app
from router_model.serve.core import RouterService


@hydra.main(config_path=CONF_DIR, config_name="router_serve", version_base="1.3")
def main(cfg: DictConfig) -> None:
    import uvicorn

    plain = OmegaConf.to_container(cfg, resolve=True)
    serve = cfg.serve
    if int(serve.workers) > 1:
        os.environ[CONFIG_ENV] = json.dumps(plain)
        uvicorn.run("router_model.serve.app:app_from_env", factory=True, host=serve.host,
                    port=int(serve.port), workers=int(serve.workers), log_level=serve.log_level)
        return
    service = RouterService.from_config(plain)
    ready = service.readiness()
    print(f"router-serve {ready['replica']} on http://{serve.host}:{serve.port} "
          f"({ready['mode']}, {ready['router_version']}); decisions -> "
          f"{service.settings.decision_log}", flush=True)
    uvicorn.run(create_app(service), host=serve.host, port=int(serve.port),
                log_level=serve.log_level)
