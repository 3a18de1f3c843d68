"""Config to settings, for every training CLI: the conversions the commands share.

Each command composes its hydra config and turns it here into frozen dataclasses once;
everything below the CLI modules takes those objects, never a config node.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any, get_type_hints

from omegaconf import DictConfig, OmegaConf

from router_model.config import CONF_DIR, Paths, plain, typed
from training.router_settings import RouterSettings


def typed_tree(schema: type, node: Any, where: str, **extra: Any) -> Any:
    """`typed`, with each nested dataclass built on its own first: OmegaConf cannot merge
    into a nested frozen schema, and a nested error then names its own key."""
    hints = get_type_hints(schema)
    nested = {f.name: hints[f.name] for f in fields(schema)
              if isinstance(hints[f.name], type) and is_dataclass(hints[f.name])}
    values = plain(node) if node is not None else {}
    built = {name: typed_tree(kind, values[name], f"{where}.{name}")
             for name, kind in nested.items() if name in values}
    rest = {k: v for k, v in values.items() if k not in nested and k not in extra}
    return typed(schema, rest, where, **built, **extra)


def router_settings(cfg: DictConfig) -> RouterSettings:
    return typed_tree(RouterSettings, cfg.get("router"), "router")


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
