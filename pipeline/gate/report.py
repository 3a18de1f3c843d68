"""router-gate-calibrate's report: the measured separation of good and bad outputs."""

from __future__ import annotations

from typing import Any

from pipeline.gate.evaluate import TARGETS


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def field_table(by_field: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| field | good / bad | AUC | false pass | false fail |", "|---|---|---|---|---|"]
    for key, r in by_field.items():
        name = f"**{key}**" if key in ("long fields", "all") else key
        lines.append(f"| {name} | {r['good']} / {r['bad']} | {_num(r['auc'])} | "
                     f"{_pct(r['false_pass'])} ({r['false_pass_n']}) | "
                     f"{_pct(r['false_fail'])} ({r['false_fail_n']}) |")
    return lines


def target_line(by_field: dict[str, dict[str, Any]]) -> str:
    long = by_field.get("long fields")
    if not long:
        return "long fields: none in the test split"
    parts = []
    for key, limit in TARGETS.items():
        value = long.get(key)
        verdict = "met" if value is not None and value <= limit else "missed"
        parts.append(f"{key.replace('_', ' ')} {_pct(value)} (target <= {limit:.0%}: {verdict})")
    return "long fields (lesson_content, exercise): " + "; ".join(parts)


def format_report(metrics: dict[str, Any], brief: bool = False) -> str:
    """Markdown: per scorer, its test-split table; the default scorer cross-fitted, by
    language and by level; the prior sweep. `brief`: the terminal summary."""
    c = metrics["counts"]
    lines = [f"# Gate calibration ({metrics.get('gate_version')})", "",
             f"{c['examples']} labelled outputs ({c['briefs']} briefs of the realism set, "
             f"{c['gsm8k']} GSM8K answers); fitted on {c['train']}, measured on {c['test']} "
             "held-out outputs (whole briefs / prompts held out).", ""]
    for name, fig in metrics["figures"].items():
        marker = " (the gate's scorer)" if name == metrics["default"] else ""
        lines += [f"## {name}{marker}: test split", "", target_line(fig["by_field"]), ""]
        if brief:
            continue
        lines += [*field_table(fig["by_field"]), ""]
    default = metrics["default"]
    fig = metrics["figures"][default]
    lines += [f"## {default}: share of each level passed (test split)", "",
              " | ".join(f"{k} {_pct(v)}" for k, v in fig["level_pass"].items()), ""]
    if brief:
        lines.append(f"map: {metrics.get('map_file')}; full report: reports/gate/report.md")
        return "\n".join(lines)
    lines += [f"## {default}: by course language (test split)", "",
              *field_table(fig["by_language"]), "",
              f"## {default}: cross-fitted by brief (every brief held out once)", "",
              target_line(metrics["cross_fitted"]["by_field"]), "",
              *field_table(metrics["cross_fitted"]["by_field"]), "",
              f"## {default}: the traffic prior decides the trade-off (long fields, test split)",
              "", "| good share | false pass | false fail |", "|---|---|---|"]
    lines += [f"| {r['good_share']} | {_pct(r['false_pass'])} | {_pct(r['false_fail'])} |"
              for r in metrics["prior_sweep"]]
    return "\n".join(lines) + "\n"
