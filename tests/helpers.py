"""Helpers shared by the tests: composing configs as the entry points do, temp paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from router_model.config import CONF_DIR, yaml_defaults
from router_model.decide.settings import PolicySettings

REPO = Path(__file__).resolve().parents[1]  # the checkout, whatever folder a test sits in
SHARED_DATA = REPO.parent / "shared" / "data" / "public_routing"


def compose_config(name: str = "router_simulate", overrides: list[str] | None = None
                   ) -> DictConfig:
    """Compose a root config exactly as its entry point would, with overrides."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=overrides or [])


def policy_settings(**changes: Any) -> PolicySettings:
    """router.policy as conf/router/default.yaml sets it, with `changes`."""
    return yaml_defaults(PolicySettings, "router", "policy", **changes)


def yaml_guarantee(**changes: Any) -> Any:
    """router.guarantee as conf/router/default.yaml sets it, with `changes`."""
    from training.guarantee import GuaranteeSettings

    return yaml_defaults(GuaranteeSettings, "router", "guarantee", **changes)


def path_overrides(cfg: Any) -> list[str]:
    """Overrides that send another job to the same places as `cfg` (its `paths` locations;
    the log-reading rules are settings, not places, and stay as configured)."""
    return [f"paths.{k}={v}" for k, v in cfg.paths.items() if k != "log_reading"]


def tmp_paths(tmp: Path) -> list[str]:
    """Overrides that send every output of a job into `tmp`."""
    return [f"paths.data_dir={tmp}/data", f"paths.artifacts_dir={tmp}/artifacts",
            f"paths.reports_dir={tmp}/reports", f"paths.cache_dir={tmp}/cache"]


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a Prometheus text exposition as (name, labels, value): tests compare
    labels as a mapping, since the exposition's label order is the library's choice."""
    from prometheus_client.parser import text_string_to_metric_families

    return [(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


def metric_values(text: str, name: str, **labels: str) -> list[float]:
    """The values of the series called `name` whose labels include `labels`."""
    return [value for sample, have, value in metric_samples(text)
            if sample == name and labels.items() <= have.items()]
