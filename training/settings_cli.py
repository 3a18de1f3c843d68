"""Config to settings, for every training CLI: the conversions the commands share.

Each command composes its hydra config and turns it here into frozen dataclasses once;
everything below the CLI modules takes those objects, never a config node.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from router_model.cli_errors import user_errors
from router_model.config import CONF_DIR, Paths, typed
from training.router_settings import RouterSettings


def root_settings(schema: type, cfg: DictConfig, where: str) -> Any:
    """A command whose settings sit at the config's root (not in a group): its schema's
    keys, typed."""
    keys = list(schema.__dataclass_fields__)
    return typed(schema, {k: cfg[k] for k in keys if k in cfg}, where)


def router_settings(cfg: DictConfig) -> RouterSettings:
    return typed(RouterSettings, cfg.get("router"), "router")


def paths(cfg: DictConfig) -> Paths:
    return typed(Paths, cfg.get("paths"), "paths")


def compose(name: str, overrides: list[str]) -> DictConfig:
    """Another command's config, composed from the same tree (inside a hydra app or not):
    the orchestrating commands run others with it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside a hydra app: its search path
        cfg = hydra_compose(config_name=name, overrides=overrides)
    else:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = hydra_compose(config_name=name, overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg


def folder_paths(folder: Path) -> list[str]:
    """Overrides that keep one run's logs, artifacts, reports and cache in `folder`: the
    orchestrating commands give each of their runs its own."""
    return [f"paths.data_dir={folder}/data", f"paths.artifacts_dir={folder}/artifacts",
            f"paths.reports_dir={folder}/reports", f"paths.cache_dir={folder}/cache"]


def orchestrate(cfg: DictConfig, command: str, settings_of: Callable[[DictConfig], Any],
                run: Callable[[Any, dict[str, Any]], dict[str, Any]],
                render: Callable[[dict[str, Any]], str], reports: str) -> None:
    """An orchestrating command's entry point: typed settings, the run (given the resolved
    config to record), its summary and where the reports went."""
    with user_errors(command):
        OmegaConf.resolve(cfg)
        settings = settings_of(cfg)
        result = run(settings, OmegaConf.to_container(cfg, resolve=True))
    print(render(result))
    print(f"Reports in {settings.reports_dir}/{reports}")
