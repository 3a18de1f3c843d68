"""Render a training run: the terminal summary and report.md, from the one metrics dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _metric_rows(groups: dict[str, dict[str, Any]]) -> list[str]:
    rows = ["| group | n | pass rate | ROC-AUC | PR-AUC | Brier | ECE |",
            "|---|---|---|---|---|---|---|"]
    for name, m in groups.items():
        rows.append(f"| {name} | {m['n']:,} | {_fmt(m['pass_rate'])} | {_fmt(m['roc_auc'])} | "
                    f"{_fmt(m['pr_auc'])} | {_fmt(m['brier'])} | {_fmt(m['ece'])} |")
    return rows


def markdown_report(metrics: dict[str, Any]) -> str:
    """A short report: headline comparison, per-tier and per-field reliability, importances."""
    d = metrics["data"]
    lines = [f"# Router training report: {metrics.get('router_version', '')}", "",
             f"{d['valid']:,} valid log rows ({d['quarantined']:,} quarantined) -> "
             f"{d['examples']:,} (task, tier) examples; held out {d['test_courses']:,} courses "
             f"({d['test_examples']:,} examples, split by {d['split']}).", "",
             "## Held-out comparison", "",
             "| model | log-loss | ROC-AUC | PR-AUC | Brier | ECE |", "|---|---|---|---|---|---|"]
    candidates = {metrics["model"] + " (calibrated)": metrics["overall"],
                  metrics["model"] + " (uncalibrated)": metrics["uncalibrated"]}
    candidates |= {k.removeprefix("baseline_") + " (calibrated)": v["overall"]
                   for k, v in metrics.items() if k.startswith("baseline_")}
    for name, m in candidates.items():
        lines.append(f"| {name} | {_fmt(m['log_loss'], 4)} | {_fmt(m['roc_auc'])} | "
                     f"{_fmt(m['pr_auc'])} | {_fmt(m['brier'], 4)} | {_fmt(m['ece'], 4)} |")
    lines += ["", "## By tier", "", *_metric_rows(metrics["by_tier"]),
              "", "## By field", "", *_metric_rows(metrics["by_field"]),
              "", "## Feature importance (share of gain)", ""]
    for name, share in sorted(metrics["feature_importance"].items(), key=lambda kv: -kv[1]):
        lines.append(f"- {name}: {share:.3f}")
    lines += ["", "![reliability](reliability.png)", ""]
    return "\n".join(lines)


def format_summary(m: dict[str, Any], artifact_path: Path, reports_dir: Path,
                   seconds: dict[str, float]) -> str:
    d = m["data"]
    o = m["overall"]
    lines = [f"Trained {m['model']} -> {artifact_path}",
             f"  data: {d['valid']:,} log rows ({d['quarantined']:,} quarantined), "
             f"{d['examples']:,} examples; held out {d['test_courses']:,} courses"
             + (" (cached dataset)" if d["from_cache"] else "")
             + (f"; {d['files_quarantined']:,} unreadable log files skipped (see the "
                "quarantine file)" if d.get("files_quarantined") else ""),
             f"  held-out: log-loss {_fmt(o['log_loss'], 4)}  ROC-AUC {_fmt(o['roc_auc'])}  "
             f"PR-AUC {_fmt(o['pr_auc'])}  Brier {_fmt(o['brier'], 4)}  ECE {_fmt(o['ece'], 4)}"]
    for key, value in m.items():
        if key.startswith("baseline_"):
            b = value["overall"]
            lines.append(f"  baseline {key.removeprefix('baseline_')}: log-loss "
                         f"{_fmt(b['log_loss'], 4)}  ROC-AUC {_fmt(b['roc_auc'])}  "
                         f"ECE {_fmt(b['ece'], 4)}")
    lines.append("  ECE by tier: " + ", ".join(f"{t} {_fmt(v['ece'])}"
                                               for t, v in m["by_tier"].items()))
    for key, k in (m.get("calibration") or {}).items():
        if k:
            lines.append(f"  {key}: {k['dial']} {k['value']:.4g}, calibrated to {k['target']}"
                         f" (target {k['target_value']:.4f}, expected {k['expected']:.4f})")
    top = sorted(m["feature_importance"].items(), key=lambda kv: -kv[1])[:5]
    lines.append("  top features: " + ", ".join(f"{k} {v:.2f}" for k, v in top))
    lines.append(f"  reports: {reports_dir}/{{metrics.json,report.md,reliability.png}}")
    lines.append("  seconds: " + ", ".join(f"{k} {v}" for k, v in seconds.items()))
    return "\n".join(lines)
