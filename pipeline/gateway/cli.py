"""`router-gateway`: the router as an OpenAI-compatible endpoint (route, call, gate, escalate).

A command of its own rather than a flag on router-serve: it holds provider keys and calls
providers (router-serve does neither), it loads MiniLM for requests that carry a reference
(router-serve's serving path never imports torch), and it lives on the pipeline floor,
above the service it extends (router_model never imports pipeline). Its app is router-serve's
app plus two endpoints, so one process answers both.
"""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline.gateway.app import create_gateway_app
from pipeline.gateway.service import Gateway, GatewaySettings
from pipeline.generator.llm_client import LLMClient, provider_settings
from router_model.cli_errors import user_errors
from router_model.config import CONF_DIR, typed
from router_model.serve.core import RouterService
from router_model.serve.json_logs import log_config


def build_gateway(cfg: Any) -> Gateway:
    """The gateway a composed `router_gateway` config describes."""
    service = RouterService.from_config(cfg)
    llm = LLMClient(service.catalog, provider_settings(cfg["provider"]))
    return Gateway(service, llm, typed(GatewaySettings, cfg["gateway"], "gateway"))


@hydra.main(config_path=CONF_DIR, config_name="router_gateway", version_base="1.3")
def main(cfg: DictConfig) -> None:
    import uvicorn

    with user_errors("router-gateway"):
        plain = OmegaConf.to_container(cfg, resolve=True)
        gateway = build_gateway(plain)
        s = gateway.service.settings
        print(f"router-gateway on http://{s.host}:{s.port}/v1 (model {gateway.settings.model_name}"
              f", {gateway.service.readiness()['mode']}); attempts -> "
              f"{gateway.attempts.path}", flush=True)
        uvicorn.run(create_gateway_app(gateway), host=s.host, port=s.port,
                    log_level=s.log_level, **log_config(plain))
