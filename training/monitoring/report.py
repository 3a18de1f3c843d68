"""router-monitor's reports: metrics.json, report.md and three plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def alert_lines(alerts: list[dict[str, Any]]) -> list[str]:
    if not alerts:
        return ["No alerts: every statistic is within conf/monitor's thresholds."]
    lines = []
    for a in alerts:
        ref = f" (reference {_fmt(a['reference'])})" if a.get("reference") is not None else ""
        lines.append(f"- **{a['kind']}: {a['name']}**: {a['statistic']} {_fmt(a['value'])}"
                     f"{ref}, threshold {_fmt(a['threshold'])}, p={_fmt(a.get('p_value'), '.2g')}"
                     f". {a['advice']}.")
    return lines


def value_lines(value: dict[str, Any] | None) -> list[str]:
    if not value:
        return ["Off-policy estimates: off (monitor.ope=false)."]
    lines = [f"Off-policy estimates on {value['tasks']:,} recent tasks "
             f"({value['explored_share']:.1%} explored):", "",
             "| policy | cost/task SNIPS | cost/task DR [95% CI] | gate pass DR [95% CI] | ESS |",
             "|---|---|---|---|---|"]
    for name, v in value["policies"].items():
        c, q = v["cost"], v["passed"]
        lines.append(f"| {name} | {c['snips']['value']:.4f} | {c['dr']['value']:.4f} "
                     f"[{c['dr']['ci_low']:.4f}, {c['dr']['ci_high']:.4f}] | "
                     f"{q['dr']['value']:.4f} [{q['dr']['ci_low']:.4f}, {q['dr']['ci_high']:.4f}]"
                     f" | {v['effective_sample_size']:.0f} |")
    lines += [f"- warning: {w}" for w in value["warnings"]]
    return lines


def markdown(m: dict[str, Any]) -> str:
    w, cal = m["window"], m["calibration"]
    cost = m["outcome_drift"]["cost_per_course"]
    lines = [f"# router-monitor: {m['router_version']}", "",
             f"Window: {w['window_tasks']:,} tasks of {w['courses']:,} courses, "
             f"{w['first_task']} .. {w['last_task']} ({w['days']} days of {w['logs']}); "
             f"{w['quarantined']:,} rows quarantined. Decision log: "
             f"{m['decision_log']['joined_tasks']:,} tasks joined.", "",
             f"## Alerts ({len(m['alerts'])})", "", *alert_lines(m["alerts"]), "",
             "## Feature drift", "", "| feature | PSI | test | p | alert |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['feature']} | {_fmt(r['psi'])} | {r.get('test', 'absent')} | "
              f"{_fmt(r['p_value'], '.2g')} | {'**yes**' if r['alert'] else ''} |"
              for r in m["feature_drift"]]
    lines += ["", "## Calibration", "",
              f"ECE {_fmt(cal['ece'])} on {cal['n']:,} start-tier verdicts (training: "
              f"{_fmt(cal.get('reference_ece'))}; 95% of ECEs from correct probabilities stay "
              f"below {_fmt(cal.get('chance_ece_95'))}).", "",
              "## Outcomes", "",
              f"Cost per course {_fmt(cost['value'], '.4f')} [{_fmt(cost['ci_low'], '.4f')}, "
              f"{_fmt(cost['ci_high'], '.4f')}] (training logs: {_fmt(cost['reference'], '.4f')};"
              " it moves when the serving policy changes, so it informs but never alerts).", "",
              "| family | field | tier | recent [95% CI] | reference | n | alert |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['family']} | {r['field']} | {r.get('tier', '')} | {_fmt(r['rate'])} "
              f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | {_fmt(r['reference'])} | {r['n']} "
              f"| {'**yes**' if r['alert'] else ''} |" for r in m["outcome_drift"]["rates"]]
    lines += ["", "## Policy value on recent traffic", "", *value_lines(m["policy_value"])]
    return "\n".join(lines) + "\n"


def plots(m: dict[str, Any], out: Path) -> None:
    """PSI per feature, the reliability curve, and pass rates per day."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in m["feature_drift"] if r["psi"] is not None]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.5))
    ax.barh([r["feature"] for r in rows], [r["psi"] for r in rows],
            color=["tab:red" if r["alert"] else "tab:blue" for r in rows])
    ax.set_xlabel("PSI against the training logs (red: alert)")
    fig.tight_layout()
    fig.savefig(out / "feature_drift.png", dpi=100)
    plt.close(fig)
    curve = m["calibration"]["curve"]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.plot([c["mean_p"] for c in curve], [c["pass_rate"] for c in curve], marker="o")
    ax.set_xlabel("served pass probability")
    ax.set_ylabel("first-attempt pass rate")
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=100)
    plt.close(fig)
    days = m["pass_rate_by_day"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for key in ("first_pass", "final_pass"):
        ax.plot(pd.to_datetime([d["day"] for d in days]), [d[key] for d in days], marker=".",
                label=key)
    ax.legend()
    ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    fig.tight_layout()
    fig.savefig(out / "pass_rate.png", dpi=100)
    plt.close(fig)


def write_reports(m: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(m, indent=2, default=str))
    (out / "report.md").write_text(markdown(m))
    try:
        plots(m, out)
    except (ValueError, OverflowError) as exc:  # e.g. dates matplotlib cannot draw
        (out / "plots_skipped.txt").write_text(f"plots skipped: {str(exc)[:500]}\n")


def _where(r: dict[str, Any]) -> str:
    if r["matched_quality"] is None:
        return "at the served dials"
    return f"at {r['quality_measure']} {r['matched_quality']:.4f} (the higher served)"


def format_promotion(r: dict[str, Any]) -> str:
    """What router-promote prints: the comparison, then the decision and its reasons."""
    if r.get("champion") is None:
        return f"router-promote: {r['candidate']} promoted ({r['note']})."
    if "courses" not in r:
        return f"router-promote: {r['candidate']} not promoted: {'; '.join(r['reasons'])}."
    conf = f"{r['margins']['confidence']:.0%}"
    lines = [f"router-promote: candidate {r['candidate']} vs champion {r['champion']} on "
             f"{r['courses']:,} held-out courses ({r['tasks']:,} tasks), {r['method']}:",
             f"  served dials: cost/course champion {r['champion_cost_per_course']:.4f}, "
             f"candidate {r['candidate_cost_per_course']:.4f}; {r['quality_measure']} "
             f"champion {r['champion_quality']:.4f}, candidate {r['candidate_quality']:.4f}",
             f"  cost {_where(r)}: {r['cost_change']:+.2%} ({conf} upper "
             f"{r['cost_change_upper']:+.2%}; margin {r['margins']['cost_margin']:+.2%})",
             f"  {r['quality_measure']} at the served dials: {r['quality_change']:+.4f} ({conf} "
             f"lower {r['quality_change_lower']:+.4f}; margin -{r['margins']['quality_margin']})",
             f"  guarantee: {r['guarantee']}"]
    if r["non_inferior"]:
        lines.append("PROMOTED: LATEST now names the candidate.")
    elif r["promoted"]:
        lines.append("PROMOTED BY --force despite: " + "; ".join(r["reasons"]))
    else:
        lines.append("REFUSED: " + "; ".join(r["reasons"]) + ". LATEST is unchanged.")
    return "\n".join(lines)
