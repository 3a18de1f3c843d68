"""`router-monitor` and `router-promote`: hydra entry points; each config becomes a
`MonitorJob` or `PromoteJob` here, once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from router_model.cli_errors import user_errors
from router_model.config import CONF_DIR, Catalog, ConfigError, plain, typed
from router_model.model.artifact import ArtifactError
from training.monitoring.monitor import MonitorJob, MonitorSettings, run_monitor
from training.monitoring.promote import PromoteJob, PromoteSettings, run_promote
from training.monitoring.report import format_promotion, write_reports
from training.settings_cli import paths, router_settings


def monitor_job(cfg: DictConfig) -> MonitorJob:
    return MonitorJob(catalog=Catalog.from_config(cfg), paths=paths(cfg),
                      router=router_settings(cfg),
                      monitor=typed(MonitorSettings, cfg.get("monitor"), "monitor"),
                      routers=plain(cfg.routers), reports_dir=str(cfg.reports_dir))


def promote_job(cfg: DictConfig) -> PromoteJob:
    return PromoteJob(catalog=Catalog.from_config(cfg), paths=paths(cfg),
                      router=router_settings(cfg),
                      promote=typed(PromoteSettings, cfg.get("promote"), "promote"))


@hydra.main(config_path=CONF_DIR, config_name="router_monitor", version_base="1.3")
def monitor(cfg: DictConfig) -> None:
    with user_errors("router-monitor"):
        OmegaConf.resolve(cfg)
        job = monitor_job(cfg)
        result = run_monitor(job)
        out = Path(job.reports_dir)
        write_reports(result, out)
    w = result["window"]
    print(f"router-monitor: {result['router_version']}, {w['window_tasks']:,} tasks in the "
          f"window; {len(result['alerts'])} alert(s) -> {out}/report.md")
    for a in result["alerts"]:
        print(f"  ALERT {a['kind']}: {a['name']} {a['statistic']}={a['value']} "
              f"(threshold {a['threshold']}): {a['advice']}")
    if result["alerts"] and job.monitor.fail_on_alert:
        sys.exit(1)


def promote_overrides(argv: list[str]) -> list[str]:
    """`router-promote <candidate> [--force] [key=value ...]` as hydra overrides."""
    out = []
    for arg in argv:
        if arg == "--force":
            out.append("promote.force=true")
        elif not arg.startswith("-") and "=" not in arg:
            out.append(f"promote.candidate={arg}")
        else:
            out.append(arg)
    return out


@hydra.main(config_path=CONF_DIR, config_name="router_promote", version_base="1.3")
def _promote(cfg: DictConfig) -> None:
    with user_errors("router-promote"):
        OmegaConf.resolve(cfg)
        job = promote_job(cfg)
        if not job.promote.candidate:
            raise ConfigError("name the candidate version folder, e.g. router-promote "
                              f"{job.router.artifact}/lightgbm-<hash> (see --help)")
        try:
            result = run_promote(job, job.promote.candidate)
        except ArtifactError as exc:  # corrupt or foreign: a user error, whatever --force says
            raise ValueError(f"refused: {exc}") from None
        except ValueError as exc:  # no exploration, nothing serving, a bad setting
            raise ValueError(f"no verdict: {exc}") from None
        if job.promote.report:
            report = Path(job.promote.report)
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(result, indent=2))
    print(format_promotion(result))
    if not result["promoted"] and job.promote.fail_on_refusal:
        sys.exit(2)


def promote() -> None:
    sys.argv = [sys.argv[0], *promote_overrides(sys.argv[1:])]
    _promote()
