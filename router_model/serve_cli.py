"""`router-serve`: build the service from config and run it under uvicorn."""

from __future__ import annotations

import json
import os

import hydra
from omegaconf import DictConfig, OmegaConf

from router_model.config import CONF_DIR, build_catalog
from router_model.policy import PolicySettings
from router_model.serving import RouterService, ServeSettings

SERVE_KEYS = set(ServeSettings.__dataclass_fields__)


def build_service(cfg: DictConfig, seed: int | None = None) -> RouterService:
    serve = {k: v for k, v in OmegaConf.to_container(cfg.serve, resolve=True).items()
             if k in SERVE_KEYS}
    return RouterService(build_catalog(cfg), PolicySettings.from_config(cfg.router.policy),
                         ServeSettings(**serve), seed=seed)


@hydra.main(config_path=CONF_DIR, config_name="router_serve", version_base="1.3")
def main(cfg: DictConfig) -> None:
    import uvicorn

    from router_model.service import CONFIG_ENV, create_app

    OmegaConf.resolve(cfg)
    serve = cfg.serve
    if int(serve.workers) > 1:
        os.environ[CONFIG_ENV] = json.dumps(OmegaConf.to_container(cfg))
        uvicorn.run("router_model.service:app_from_env", factory=True, host=serve.host,
                    port=int(serve.port), workers=int(serve.workers), log_level=serve.log_level)
        return
    service = build_service(cfg)
    ready = service.readiness()
    print(f"router-serve on http://{serve.host}:{serve.port} ({ready['mode']}, "
          f"{ready['router_version']}); decisions -> {serve.decision_log}", flush=True)
    uvicorn.run(create_app(service), host=serve.host, port=int(serve.port),
                log_level=serve.log_level)
