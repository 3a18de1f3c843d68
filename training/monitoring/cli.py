"""Thin hydra entry points: `router-monitor` and `router-promote`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from router_model.config import CONF_DIR
from router_model.model.artifact import ArtifactError
from training.monitoring.monitor import run_monitor
from training.monitoring.promote import run_promote
from training.monitoring.report import format_promotion, write_reports


@hydra.main(config_path=CONF_DIR, config_name="router_monitor", version_base="1.3")
def monitor(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    try:
        result = run_monitor(cfg)
    except (RuntimeError, ValueError, KeyError) as exc:  # config, logs or artifact: say which
        sys.exit(f"router-monitor: {str(exc)[:2000]}")
    out = Path(cfg.reports_dir)
    write_reports(result, out)
    w = result["window"]
    print(f"router-monitor: {result['router_version']}, {w['window_tasks']:,} tasks in the "
          f"window; {len(result['alerts'])} alert(s) -> {out}/report.md")
    for a in result["alerts"]:
        print(f"  ALERT {a['kind']}: {a['name']} {a['statistic']}={a['value']} "
              f"(threshold {a['threshold']}): {a['advice']}")
    if result["alerts"] and cfg.monitor.fail_on_alert:
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
    OmegaConf.resolve(cfg)
    if not cfg.promote.candidate:
        sys.exit("router-promote: name the candidate version folder, e.g. router-promote "
                 f"{cfg.router.artifact}/lightgbm-<hash> (see --help)")
    try:
        result = run_promote(cfg, str(cfg.promote.candidate), force=bool(cfg.promote.force))
    except ArtifactError as exc:
        sys.exit(f"router-promote: refused: {str(exc)[:2000]}")
    except ValueError as exc:  # no exploration, nothing serving, a bad setting
        sys.exit(f"router-promote: no verdict: {str(exc)[:2000]}")
    print(format_promotion(result))
    if cfg.promote.get("report"):
        report = Path(cfg.promote.report)
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=2))
    if not result["promoted"] and cfg.promote.fail_on_refusal:
        sys.exit(2)


def promote() -> None:
    sys.argv = [sys.argv[0], *promote_overrides(sys.argv[1:])]
    _promote()
