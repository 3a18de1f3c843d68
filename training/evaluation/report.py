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

from pipeline.seed_terms import format_targets

COLUMNS = [("cost_per_course", "$/course", "{:.4f}"),
           ("weighted_true_pass_rate", "w. true pass", "{:.4f}"),
           ("high_impact_true_pass_rate", "hi-impact", "{:.4f}"),
           ("true_pass_rate", "true pass", "{:.4f}"), ("false_pass_rate", "false pass", "{:.4f}"),
           ("calls_per_task", "calls/task", "{:.3f}"), ("premium_share", "premium", "{:.3f}"),
           ("latency_s_per_course", "s/course", "{:.0f}")]
DEPLOYED = ("Every router at the dial it deploys with (calibrated on its training logs only); "
            "w. true pass weighs each task by its field's impact score, hi-impact is the true "
            "pass of the fields of impact >= 8.")


def policy_table(metrics: dict[str, dict[str, Any]], markdown: bool = False) -> str:
    """The deployed rows, learned first, then static, then the rest."""
    names = sorted(metrics, key=lambda n: (n != "learned", n != "static"))
    if markdown:
        head = "| router | " + " | ".join(c[1] for c in COLUMNS) + " |"
        lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
        for n in names:
            lines.append(f"| {n} | " + " | ".join(fmt.format(metrics[n][k])
                                                  for k, _, fmt in COLUMNS) + " |")
        return "\n".join(lines)
    lines = [f"{'router':<22}" + "".join(f"{c[1]:>13}" for c in COLUMNS)]
    for n in names:
        lines.append(f"{n:<22}" + "".join(f"{fmt.format(metrics[n][k]):>13}"
                                          for k, _, fmt in COLUMNS))
    return "\n".join(lines)


def _ci(s: dict[str, float], pct: bool = True) -> str:
    if pct:
        return f"{s['value']:+.1%} [{s['ci_low']:+.1%}, {s['ci_high']:+.1%}]"
    return f"{s['value']:+.4f} [{s['ci_low']:+.4f}, {s['ci_high']:+.4f}]"


def matched_lines(result: dict[str, Any]) -> list[str]:
    """Each router's cost (and wall time) at the reference's impact-weighted true pass, the
    compared routers against the pooled baselines there, and the same unweighted."""
    lines = []
    for key in ("weighted", "unweighted"):
        h = result["matched"][key]
        shown = ", ".join(f"{n} {t:.4f}" for n, t in h["targets"].items())
        lines.append(f"At {h['match_quality_of']}'s {h['quality']} ({shown}); {h['label']}. "
                     f"Pooled baselines: any mix of {', '.join(h['baselines'])}.")
        if key == "weighted":
            for name, cost in sorted(h["cost_at_target"].items(), key=lambda kv: kv[1]):
                seconds = h["latency_s_per_course_at_target"][name]
                shown = (f"${cost:.4f}/course, {seconds:.0f} s/course" if math.isfinite(cost)
                         else "never reaches it")
                lines.append(f"  {name:<22} {shown}")
        for name, c in h.items():
            if isinstance(c, dict) and "saving" in c:
                lines.append(f"  {name} vs the best baseline mix: saving {_ci(c['saving'])}, "
                             f"${_ci(c['difference_per_course'], pct=False)} per course "
                             "(95% CI over courses)")
    qc = result["matched"]["quality_at_cost"]
    reached = (f"reaches impact-weighted true pass {qc['learned']:.4f} vs"
               if math.isfinite(qc["learned"]) else "never gets that cheap; the ladder reaches")
    lines.append(f"At {qc['of']}'s cost (${qc['cost_per_course']:.4f}/course) the learned "
                 f"frontier {reached} {qc['baseline']:.4f} ({qc['label']})")
    return lines


def learning_lines(result: dict[str, Any]) -> list[str]:
    """The saving against static split into planner-on-lookup and model-over-lookup."""
    split = result["where_savings_come_from"]["learning"]
    if not split:
        return []
    lines = ["Where the learned policy earns its place (saving against static, $/course, at "
             "the deployed dials): planner on the lookup table + model over the table", ""]
    lines.append(f"  {'field':<22}{'static $':>10}{'planner':>10}{'model':>10}"
                 f"{'static tp':>11}{'lookup tp':>11}{'learned tp':>11}")
    for field, row in split["per_field_deployed"].items():
        tp = row["true_pass"]
        lines.append(f"  {field:<22}{row['static']:>10.4f}{row['planner_on_lookup']:>10.4f}"
                     f"{row['model_over_lookup']:>10.4f}{tp['static']:>11.4f}"
                     f"{tp['lookup']:>11.4f}{tp['learned']:>11.4f}")
    total = split["at_matched_quality"]
    if total:
        lines.append(f"  in all, at static's quality ({total['label']}): "
                     f"planner on lookup ${total['planner_on_lookup']:.4f}, model over lookup "
                     f"${total['model_over_lookup']:.4f} ({total['model_share_of_saving']:.0%}"
                     " of the saving)")
    return lines


def seed_lines(result: dict[str, Any]) -> list[str]:
    """The seed note's per-course targets for the deployed learned router and static."""
    lines = ["The seed's targets, per course (deployed dials; a course passes first when "
             "every field passed the gate on its first call, finally when none is flagged):"]
    for name, terms in result["seed_targets"].items():
        lines += [f"  {name}", *format_targets({k: t["value"] for k, t in terms.items()})]
    return lines


def format_summary(result: dict[str, Any]) -> str:
    lines = [f"Exact replay on {result['table']} (router {result['router_version']}, "
             f"lam {result['lam']:.4g} USD per bad outcome)", DEPLOYED, "",
             policy_table(result["policies"]), "", "Targets (deployed dials):"]
    for name, t in result["targets"].items():
        lines.append(f"  [{'met ' if t['met'] else 'MISS'}] {name:<48} {t['value']:+.4f}")
    lines += ["", *seed_lines(result), "", *matched_lines(result), "", *learning_lines(result)]
    ge = result["where_savings_come_from"]["gate_error_exposure"]
    lines.append(f"  gate-error exposure (accepted but truly failing): ladder "
                 f"{ge['ladder-from-cheapest']:.2%}, static {ge['static']:.2%}, learned "
                 f"{ge['learned']:.2%}")
    p = result["published_metrics"]
    lines.append(f"  AIQ {p['aiq']:.4f}  APGR {p['apgr']:.3f}  CPT(50%) {p['cpt50']:.3f}  "
                 f"CPT(80%) {p['cpt80']:.3f}  (x = premium share, over the lam sweep)")
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
    q = "weighted_true_pass_rate"
    for name, sweep in result["sweeps"].items():
        for floored in (True, False):
            line = [s for s in sweep if s["floors"] == floored]
            if line:
                ax.plot([s["cost_per_course"] for s in line], [s[q] for s in line],
                        marker="o", ms=3, ls="-" if floored else ":",
                        label=f"{name} ({line[0]['dial']} swept on this world"
                              f"{'' if floored else ', no floors'})")
    for name, m in result["policies"].items():
        ax.scatter(m["cost_per_course"], m[q], s=40, zorder=3, marker="x")
        ax.annotate(name, (m["cost_per_course"], m[q]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    h = result["matched"]["weighted"]
    ax.axhline(h["targets"]["weighted"], color="grey", lw=0.8, ls="--",
               label=f"{h['match_quality_of']}'s impact-weighted true pass")
    ax.set_xscale("log")
    ax.set_xlabel("cost per course (USD, log scale)")
    ax.set_ylabel("impact-weighted true final pass rate")
    ax.set_title("Cost vs quality: x = deployed dials; lines = dials swept (upper bound)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_report(result: dict[str, Any], by_field: pd.DataFrame) -> str:
    lines = [f"# Offline evaluation: {result['router_version']}", "",
             f"Exact replay on {result['table']}; learned lam {result['lam']:.4g} USD per bad "
             f"outcome.", "", "## Deployed", "", DEPLOYED, "",
             policy_table(result["policies"], markdown=True), "", "## Targets (deployed dials)",
             ""]
    for name, t in result["targets"].items():
        lines.append(f"- {'met' if t['met'] else '**missed**'}: {name} = {t['value']:+.4f}")
    lines += ["", *["    " + line for line in seed_lines(result)]]
    lines += ["", "## Learned against the best simple baseline, at matched quality (upper "
              "bound)", "", *["    " + line for line in matched_lines(result)], "",
              "## Where the learned policy earns its place", "",
              *["    " + line for line in learning_lines(result)], "",
              "## Savings of the learned policy at its deployed point (each router at its own "
              "quality; 95% CI over courses)", "", "| vs | cost | calls |", "|---|---|---|"]
    for base, s in result["savings_vs"].items():
        lines.append(f"| {base} | {_ci(s['cost'])} | {_ci(s['calls'])} |")
    lines += ["", "## Per field", "",
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
        lines += ["", f"## {name}: {sweep[0]['dial']} swept on this world", "",
                  f"| {sweep[0]['dial']} | floors | $/course | w. true pass | true pass | "
                  "premium share | calls/task |", "|---|---|---|---|---|---|---|"]
        for s in sweep:
            lines.append(f"| {s['value']:.4g} | {'on' if s['floors'] else 'off'} | "
                         f"{s['cost_per_course']:.4f} | "
                         f"{s['weighted_true_pass_rate']:.4f} | {s['true_pass_rate']:.4f} | "
                         f"{s['premium_share']:.3f} | {s['calls_per_task']:.3f} |")
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
