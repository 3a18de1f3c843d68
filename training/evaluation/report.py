"""Render an evaluation result: the terminal table, report.md, metrics.json and the plots.

Both the terminal summary and `report.md` are drawn from the one result dict that
`evaluate.run_evaluate` returns, so they can never disagree.
"""

from __future__ import annotations

import json
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
    lines = [f"{'policy':<16}" + "".join(f"{c[1]:>12}" for c in COLUMNS)]
    for n in names:
        lines.append(f"{n:<16}" + "".join(f"{fmt.format(metrics[n][k]):>12}"
                                          for k, _, fmt in COLUMNS))
    return "\n".join(lines)


def _ci(s: dict[str, float]) -> str:
    return f"{s['value']:+.1%} [{s['ci_low']:+.1%}, {s['ci_high']:+.1%}]"


def format_summary(result: dict[str, Any]) -> str:
    lines = [f"Exact replay on {result['table']} (router {result['router_version']}, "
             f"knob {result['knob']:.3f})", "", policy_table(result["policies"]), "",
             "Learned policy savings (95% bootstrap CI over courses):"]
    for base, s in result["savings_vs"].items():
        lines.append(f"  vs {base:<15} cost {_ci(s['cost'])}   calls {_ci(s['calls'])}")
    lines.append(f"  oracle savings recovered (vs static): "
                 f"{result['oracle_savings_recovered']:.1%}")
    p = result["published_metrics"]
    lines.append(f"  AIQ {p['aiq']:.4f}  APGR {p['apgr']:.3f}  CPT(50%) {p['cpt50']:.3f}  "
                 f"CPT(80%) {p['cpt80']:.3f}  (x = premium share)")
    src = result["where_savings_come_from"]
    pf = src["premium_field_cost_per_course"]
    cl = src["calls_and_latency_vs_cheapest"]
    ge = src["gate_error_exposure"]
    lines += ["", "Where the learned policy earns its place:",
              f"  cheaper starts on fields static sends to premium: ${pf['static']:.4f} -> "
              f"${pf['learned']:.4f} per course",
              f"  vs the ladder from the cheapest tier: calls/task "
              f"{cl['cheapest']['calls_per_task']:.3f} -> {cl['learned']['calls_per_task']:.3f}, "
              f"latency s/task {cl['cheapest']['latency_s_per_task']:.2f} -> "
              f"{cl['learned']['latency_s_per_task']:.2f}",
              f"  gate-error exposure (accepted but truly failing): cheapest "
              f"{ge['cheapest']:.2%}, static {ge['static']:.2%}, learned {ge['learned']:.2%}"]
    lines += ["", "Targets:"]
    for name, t in result["targets"].items():
        lines.append(f"  [{'met ' if t['met'] else 'MISS'}] {name:<32} {t['value']:.3f}")
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
    pareto_plot(result, reports / "pareto.png")
    (reports / "report.md").write_text(markdown_report(result, by_field))


def pareto_plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    sweep = result["knob_sweep"]
    ax.plot([s["cost_per_course"] for s in sweep], [s["true_pass_rate"] for s in sweep],
            "-o", ms=3, color="tab:blue", label="learned (knob sweep)")
    for s in sweep[:: max(1, len(sweep) // 5)]:
        ax.annotate(f"{s['knob']:.2f}", (s["cost_per_course"], s["true_pass_rate"]),
                    fontsize=7, xytext=(3, -8), textcoords="offset points")
    for name, m in result["policies"].items():
        ax.scatter(m["cost_per_course"], m["true_pass_rate"], s=40, zorder=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("cost per course (USD, log scale)")
    ax.set_ylabel("true final pass rate")
    ax.set_title("Cost vs quality: every policy, exact replay")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_report(result: dict[str, Any], by_field: pd.DataFrame) -> str:
    lines = [f"# Offline evaluation: {result['router_version']}", "",
             f"Exact replay on {result['table']}; learned knob {result['knob']:.3f}.", "",
             policy_table(result["policies"], markdown=True), "",
             "## Savings of the learned policy (95% bootstrap CI over courses)", "",
             "| vs | cost | calls |", "|---|---|---|"]
    for base, s in result["savings_vs"].items():
        lines.append(f"| {base} | {_ci(s['cost'])} | {_ci(s['calls'])} |")
    src = result["where_savings_come_from"]
    lines += ["", f"Oracle savings recovered (relative to static): "
              f"{result['oracle_savings_recovered']:.1%}", "",
              "## Where the learned policy earns its place", "",
              "| effect | measure | value |", "|---|---|---|",
              f"| cheaper starts where static uses premium ({', '.join(src['premium_fields'])}) "
              f"| $/course on those fields, static -> learned | "
              f"{src['premium_field_cost_per_course']['static']:.4f} -> "
              f"{src['premium_field_cost_per_course']['learned']:.4f} |"]
    for name, v in src["calls_and_latency_vs_cheapest"].items():
        lines.append(f"| fewer calls and less latency | {name}: calls/task, latency s/task | "
                     f"{v['calls_per_task']:.3f}, {v['latency_s_per_task']:.2f} |")
    for name, v in src["gate_error_exposure"].items():
        lines.append(f"| less exposure to gate errors | {name}: accepted but truly failing | "
                     f"{v:.2%} |")
    lines += ["", "## Targets", ""]
    for name, t in result["targets"].items():
        lines.append(f"- {'met' if t['met'] else '**missed**'}: {name} = {t['value']:.3f}")
    lines += ["", "## Where the savings come from: per field", "",
              "| field | static $ | learned $ | static calls/task | learned calls/task | "
              "learned mean start tier |", "|---|---|---|---|---|---|"]
    pivot = by_field.pivot(index="field", columns="policy")
    for f in pivot.index:
        lines.append(f"| {f} | {pivot.loc[f, ('cost', 'static')]:.2f} | "
                     f"{pivot.loc[f, ('cost', 'learned')]:.2f} | "
                     f"{pivot.loc[f, ('calls_per_task', 'static')]:.3f} | "
                     f"{pivot.loc[f, ('calls_per_task', 'learned')]:.3f} | "
                     f"{pivot.loc[f, ('mean_start_tier', 'learned')]:.2f} |")
    lines += ["", "## Gate error (gate = true outcome flipped at the rate)", "",
              "| gate error | policy | $/course | true pass | gate pass | false pass | "
              "calls/task |", "|---|---|---|---|---|---|---|"]
    for g in result["gate_error_sweep"]:
        lines.append(f"| {g['gate_error']:.1f} | {g['policy']} | {g['cost_per_course']:.4f} | "
                     f"{g['true_pass_rate']:.4f} | {g['gate_pass_rate']:.4f} | "
                     f"{g['false_pass_rate']:.4f} | {g['calls_per_task']:.3f} |")
    lines += ["", "## Knob sweep", "", "| knob | $/course | true pass | premium share | "
              "calls/task |", "|---|---|---|---|---|"]
    for s in result["knob_sweep"]:
        lines.append(f"| {s['knob']:.2f} | {s['cost_per_course']:.4f} | "
                     f"{s['true_pass_rate']:.4f} | {s['premium_share']:.3f} | "
                     f"{s['calls_per_task']:.3f} |")
    p = result["published_metrics"]
    lines += ["", f"AIQ {p['aiq']:.4f}, APGR {p['apgr']:.3f}, CPT(50%) {p['cpt50']:.3f}, "
              f"CPT(80%) {p['cpt80']:.3f}. {p['note']}", ""]
    ope = result.get("off_policy")
    if ope and "error" not in ope:
        lines += ["## Off-policy estimates from the training logs", "",
                  "| reward | IPS | SNIPS | DR | exact replay | logging policy |",
                  "|---|---|---|---|---|---|"]
        for reward in ("cost", "passed"):
            cells = [f"{v['value']:.4f} [{v['ci_low']:.4f}, {v['ci_high']:.4f}]"
                     for v in ope[reward].values()]
            exact = ope.get("exact_replay", {}).get(reward, float("nan"))
            logged = ope.get("logging_policy", {}).get(reward, float("nan"))
            lines.append(f"| {reward} | " + " | ".join(cells) + f" | {exact:.4f} | "
                         f"{logged:.4f} |")
        lines.append(f"\nEffective sample size {ope['effective_sample_size']['value']:.0f} of "
                     f"{ope['tasks']:,} tasks; the target matches the logged start on "
                     f"{ope['matched_share']['value']:.1%}.")
    elif ope:
        lines += ["## Off-policy estimates", "", ope["error"]]
    lines += ["", "![pareto](pareto.png)", ""]
    return "\n".join(lines)
