"""Render an evaluation result: the terminal table, report.md, metrics.json and the plots.

Both the terminal summary and `report.md` are drawn from the one result dict that
`evaluate.run_evaluate` returns, so they can never disagree.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

COLUMNS = [("cost_per_course", "$/course", "{:.4f}"), ("true_pass_rate", "true pass", "{:.4f}"),
           ("gate_pass_rate", "gate pass", "{:.4f}"), ("false_pass_rate", "false pass",
                                                       "{:.4f}"),
           ("calls_per_task", "calls/task", "{:.3f}"), ("premium_share", "premium",
                                                         "{:.3f}"),
           ("latency_s_per_task", "latency s", "{:.2f}")]


def policy_table(metrics: dict[str, dict[str, Any]], markdown: bool = False) -> str:
    names = list(metrics)
    if markdown:
        head = "| policy | " + " | ".join(c[1] for c in COLUMNS) + " |"
        lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
        for n in names:
            lines.append(f"| {n} | " + " | ".join(fmt.format(metrics[n][k])
                                                  for k, _, fmt in COLUMNS) + " |")
        return "\n".join(lines)
    lines = [f"{'policy':<22}" + "".join(f"{c[1]:>11}" for c in COLUMNS)]
    for n in names:
        lines.append(f"{n:<22}" + "".join(f"{fmt.format(metrics[n][k]):>11}"
                                          for k, _, fmt in COLUMNS))
    return "\n".join(lines)


def _ci(s: dict[str, float], pct: bool = True) -> str:
    if pct:
        return f"{s['value']:+.1%} [{s['ci_low']:+.1%}, {s['ci_high']:+.1%}]"
    return f"{s['value']:+.4f} [{s['ci_low']:+.4f}, {s['ci_high']:+.4f}]"


def headline_lines(result: dict[str, Any]) -> list[str]:
    """Each compared router against the best simple baseline at matched true pass."""
    h = result["headline"]
    lines = [f"At {h['match_quality_of']}'s true pass ({h['target_true_pass']:.4f}), cost per "
             f"course along each frontier (pooled baselines: any mix of "
             f"{', '.join(h['baselines'])}):"]
    for name, cost in sorted(h["cost_at_target"].items(), key=lambda kv: kv[1]):
        shown = f"${cost:.4f}" if math.isfinite(cost) else "never reaches it"
        lines.append(f"  {name:<22} {shown}")
    qc = h["quality_at_cost"]
    lines.append(f"  at {qc['of']}'s cost (${qc['cost_per_course']:.4f}/course) the learned "
                 f"frontier reaches true pass {qc['learned']:.4f} vs {qc['baseline']:.4f}")
    for name, c in h.items():
        if isinstance(c, dict) and "saving" in c:
            lines.append(f"  {name} vs the best baseline mix: saving {_ci(c['saving'])}, "
                         f"${_ci(c['difference_per_course'], pct=False)} per course "
                         f"(95% CI over courses)")
    return lines


def format_summary(result: dict[str, Any]) -> str:
    lines = [f"Exact replay on {result['table']} (router {result['router_version']}, "
             f"lam {result['lam']:.4g} USD per bad outcome)", "",
             policy_table(result["policies"]), "", *headline_lines(result), "",
             "Learned policy savings at its calibrated point (95% bootstrap CI over courses):"]
    for base, s in result["savings_vs"].items():
        lines.append(f"  vs {base:<22} cost {_ci(s['cost'])}   calls {_ci(s['calls'])}")
    p = result["published_metrics"]
    lines.append(f"  AIQ {p['aiq']:.4f}  APGR {p['apgr']:.3f}  CPT(50%) {p['cpt50']:.3f}  "
                 f"CPT(80%) {p['cpt80']:.3f}  (x = premium share, over the lam sweep)")
    src = result["where_savings_come_from"]
    pf = src["premium_field_cost_per_course"]
    cl = src["calls_and_latency_vs_cheapest"]
    ge = src["gate_error_exposure"]
    lad = "ladder-from-cheapest"
    lines += ["", "Where the learned policy earns its place:",
              f"  cheaper starts on fields static sends to premium: ${pf['static']:.4f} -> "
              f"${pf['learned']:.4f} per course",
              f"  vs the ladder from the cheapest tier: calls/task "
              f"{cl[lad]['calls_per_task']:.3f} -> {cl['learned']['calls_per_task']:.3f}, "
              f"latency s/task {cl[lad]['latency_s_per_task']:.2f} -> "
              f"{cl['learned']['latency_s_per_task']:.2f}",
              f"  gate-error exposure (accepted but truly failing): ladder {ge[lad]:.2%}, "
              f"static {ge['static']:.2%}, learned {ge['learned']:.2%}"]
    lines += ["", "Targets:"]
    for name, t in result["targets"].items():
        lines.append(f"  [{'met ' if t['met'] else 'MISS'}] {name:<42} {t['value']:.3f}")
    ope = result.get("off_policy")
    if ope and "error" not in ope:
        lines += ["", "Off-policy estimates from the training logs (per task):"]
        for reward in ("cost", "passed"):
            est = "  ".join(f"{k.upper()} {v['value']:.4f}" for k, v in ope[reward].items())
            exact = ope.get("exact_replay", {}).get(reward)
            lines.append(f"  {reward:<6} {est}" + (f"   exact {exact:.4f}" if exact else ""))
    elif ope:
        lines += ["", f"Off-policy: {ope['error']}"]
    lines.append(f"\nReports in {result.get('reports_dir', 'reports/evaluate')} "
                 f"({result['seconds']} s)")
    return "\n".join(lines)


def write_reports(result: dict[str, Any], by_field: pd.DataFrame, reports: Path,
                  timings: dict[str, Any]) -> None:
    """metrics.json (deterministic for a seed: no timings), timings.json, the per-field CSV,
    the plot and report.md."""
    reports.mkdir(parents=True, exist_ok=True)
    result["reports_dir"] = str(reports)
    (reports / "metrics.json").write_text(json.dumps(result, indent=2, default=float))
    (reports / "timings.json").write_text(json.dumps(timings, indent=2))
    by_field.to_csv(reports / "per_field.csv", index=False)
    frontier_plot(result, reports / "pareto.png")
    (reports / "report.md").write_text(markdown_report(result, by_field))


def frontier_plot(result: dict[str, Any], path: Path) -> None:
    """Cost vs true pass: every router's point, every dial's frontier, the matched target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for name, sweep in result["sweeps"].items():
        ax.plot([s["cost_per_course"] for s in sweep], [s["true_pass_rate"] for s in sweep],
                "-o", ms=3, label=f"{name} ({sweep[0]['dial']} sweep)")
    for name, m in result["policies"].items():
        ax.scatter(m["cost_per_course"], m["true_pass_rate"], s=40, zorder=3, marker="x")
        ax.annotate(name, (m["cost_per_course"], m["true_pass_rate"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    h = result["headline"]
    ax.axhline(h["target_true_pass"], color="grey", lw=0.8, ls="--",
               label=f"{h['match_quality_of']}'s true pass")
    ax.set_xscale("log")
    ax.set_xlabel("cost per course (USD, log scale)")
    ax.set_ylabel("true final pass rate")
    ax.set_title("Cost vs quality: every router, exact replay")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_report(result: dict[str, Any], by_field: pd.DataFrame) -> str:
    lines = [f"# Offline evaluation: {result['router_version']}", "",
             f"Exact replay on {result['table']}; learned lam {result['lam']:.4g} USD per bad "
             f"outcome.", "", policy_table(result["policies"], markdown=True), "",
             "## Learned against the best simple baseline, at matched true pass", "",
             *["    " + line for line in headline_lines(result)], "",
             "## Savings of the learned policy at its calibrated point (95% CI over courses)",
             "", "| vs | cost | calls |", "|---|---|---|"]
    for base, s in result["savings_vs"].items():
        lines.append(f"| {base} | {_ci(s['cost'])} | {_ci(s['calls'])} |")
    lines += ["", "## Targets", ""]
    for name, t in result["targets"].items():
        lines.append(f"- {'met' if t['met'] else '**missed**'}: {name} = {t['value']:.3f}")
    lines += ["", "## Where the savings come from: per field", "",
              "| field | static $ | learned $ | lookup $ | learned mean start tier | "
              "lookup mean start tier |", "|---|---|---|---|---|---|"]
    pivot = by_field.pivot(index="field", columns="policy")
    for f in pivot.index:
        lines.append(f"| {f} | {pivot.loc[f, ('cost', 'static')]:.2f} | "
                     f"{pivot.loc[f, ('cost', 'learned')]:.2f} | "
                     f"{pivot.loc[f, ('cost', 'lookup')]:.2f} | "
                     f"{pivot.loc[f, ('mean_start_tier', 'learned')]:.2f} | "
                     f"{pivot.loc[f, ('mean_start_tier', 'lookup')]:.2f} |")
    lines += ["", "## Gate error (gate = true outcome flipped at the rate)", "",
              "| gate error | policy | $/course | true pass | gate pass | false pass | "
              "calls/task |", "|---|---|---|---|---|---|---|"]
    for g in result["gate_error_sweep"]:
        lines.append(f"| {g['gate_error']:.1f} | {g['policy']} | {g['cost_per_course']:.4f} | "
                     f"{g['true_pass_rate']:.4f} | {g['gate_pass_rate']:.4f} | "
                     f"{g['false_pass_rate']:.4f} | {g['calls_per_task']:.3f} |")
    for name, sweep in result["sweeps"].items():
        lines += ["", f"## {name}: {sweep[0]['dial']} sweep", "",
                  f"| {sweep[0]['dial']} | $/course | true pass | premium share | calls/task |",
                  "|---|---|---|---|---|"]
        for s in sweep:
            lines.append(f"| {s['value']:.4g} | {s['cost_per_course']:.4f} | "
                         f"{s['true_pass_rate']:.4f} | {s['premium_share']:.3f} | "
                         f"{s['calls_per_task']:.3f} |")
    p = result["published_metrics"]
    lines += ["", f"AIQ {p['aiq']:.4f}, APGR {p['apgr']:.3f}, CPT(50%) {p['cpt50']:.3f}, "
              f"CPT(80%) {p['cpt80']:.3f}. {p['note']}", ""]
    lines += off_policy_lines(result.get("off_policy"))
    lines += ["", "![frontiers](pareto.png)", ""]
    return "\n".join(lines)


def off_policy_lines(ope: dict[str, Any] | None) -> list[str]:
    if not ope:
        return []
    if "error" in ope:
        return ["## Off-policy estimates", "", ope["error"]]
    lines = ["## Off-policy estimates from the training logs", "",
             "| reward | IPS | SNIPS | DR | exact replay | logging policy |",
             "|---|---|---|---|---|---|"]
    for reward in ("cost", "passed"):
        cells = [f"{v['value']:.4f} [{v['ci_low']:.4f}, {v['ci_high']:.4f}]"
                 for v in ope[reward].values()]
        exact = ope.get("exact_replay", {}).get(reward, float("nan"))
        logged = ope.get("logging_policy", {}).get(reward, float("nan"))
        lines.append(f"| {reward} | " + " | ".join(cells) + f" | {exact:.4f} | {logged:.4f} |")
    lines.append(f"\nEffective sample size {ope['effective_sample_size']['value']:.0f} of "
                 f"{ope['tasks']:,} tasks; the target matches the logged start on "
                 f"{ope['matched_share']['value']:.1%}. The `passed` reward is the final gate "
                 "pass, about 0.9999 for every policy, so its agreement proves little; cost "
                 "is the reward with variance.")
    return lines
