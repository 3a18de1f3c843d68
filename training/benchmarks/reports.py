"""The benchmark reports: metrics.json, report.md, curve.png, ladder.png and the summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

CURVE_COLUMNS = (("apgr", "APGR", False), ("cpt50", "CPT(50%)", True),
                 ("cpt80", "CPT(80%)", True), ("aiq", "AIQ", False),
                 ("hull_saved_at_95pct_premium", "hull: saved @95% premium (upper bound)",
                  True))


def write_benchmark_reports(result: dict[str, Any], folder: Path) -> Path:
    """Write the benchmark's folder; return it (absolute)."""
    folder = folder.expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(result, indent=2, default=float))
    curve_plot(result, folder / "curve.png")
    ladder_plot(result, folder / "ladder.png")
    (folder / "report.md").write_text(benchmark_markdown(result))
    return folder


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curve_plot(result: dict[str, Any], path: Path) -> None:
    """Each router's held-out frontier over its knob, and every fixed baseline as a point."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, points in result["frontiers"].items():
        ax.plot([p["cost_per_prompt"] for p in points], [p["mean_score"] for p in points],
                label=name, lw=1.3, ls=":" if name == "random" else "-")
    for name, m in result["single_call"].items():
        if name.startswith("always-") or name in ("ladder-from-cheapest", "oracle"):
            ax.scatter(m["cost_per_prompt"]["value"], m["mean_score"]["value"], zorder=3,
                       marker="x" if name == "ladder-from-cheapest" else "o", label=name)
    ax.set_xlabel("cost per prompt (USD)")
    ax.set_ylabel("mean score")
    ax.set_title(f"{result['name']}: single-call routing, held-out prompts")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ladder_plot(result: dict[str, Any], path: Path) -> None:
    """Each learned router's lam frontier (cost vs true pass) per gate error, with the
    ladder from the cheapest model as a point."""
    plt = _plt()
    rates = list(result["ladder"])
    fig, axes = plt.subplots(1, len(rates), figsize=(5 * len(rates), 4), squeeze=False)
    for ax, rate in zip(axes[0], rates, strict=True):
        section = result["ladder"][rate]
        for name, points in section["frontiers"].items():
            ax.plot([p["cost_per_prompt"] for p in points],
                    [p["true_pass_rate"] for p in points], "-o", ms=3, label=name)
        lad = section["ladder-from-cheapest"]
        ax.scatter(lad["cost_per_prompt"], lad["true_pass_rate"], marker="x", s=60, c="k",
                   zorder=3, label="ladder-from-cheapest")
        ax.set_title(f"{result['name']}: gate error {float(rate):.1f}")
        ax.set_xlabel("cost per prompt (USD)")
        ax.set_ylabel("true pass rate")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _v(m: dict[str, Any], key: str, pct: bool = False, digits: int = 3) -> str:
    if key not in m:
        return "-"
    v = m[key]
    fmt = (lambda x: f"{x:.1%}") if pct else (lambda x: f"{x:.{digits}f}")
    if not np.isfinite(v.get("ci_low", np.nan)):
        return fmt(v["value"])
    return f"{fmt(v['value'])} [{fmt(v['ci_low'])}, {fmt(v['ci_high'])}]"


def curve_table(result: dict[str, Any], with_name: bool = False) -> list[str]:
    """Whole-knob metrics of the routers with a knob (the fixed rows have none)."""
    lines = [("| benchmark " if with_name else "") + "| router | "
             + " | ".join(c[1] for c in CURVE_COLUMNS) + " |",
             "|" + "---|" * (len(CURVE_COLUMNS) + 1 + with_name)]
    for router, m in result["single_call"].items():
        if "aiq" in m:
            cells = " | ".join(_v(m, key, pct) for key, _, pct in CURVE_COLUMNS)
            lines.append((f"| {result['name']} " if with_name else "") + f"| {router} | {cells} |")
    return lines


def operating_table(result: dict[str, Any], with_name: bool = False) -> list[str]:
    """Held-out quality (share of premium's) and saving against always-premium at the
    operating points chosen on training prompts; fixed rows at their only point."""
    labels = [f"{round(s * 100)}pct" for s in result["operating_targets"]]
    head = ("| benchmark " if with_name else "") + "| router | cost / prompt | " + " | ".join(
        f"target {lab.removesuffix('pct')}%: quality / premium | saved" for lab in labels)
    lines = [head + " |", "|" + "---|" * (2 + 2 * len(labels) + with_name)]
    for router, m in result["single_call"].items():
        cells = []
        for lab in labels:
            prefix = f"op{lab}_" if f"op{lab}_saved_vs_premium" in m else ""
            cells += [_v(m, f"{prefix}quality_vs_premium", True),
                      _v(m, f"{prefix}saved_vs_premium", True)]
        lines.append((f"| {result['name']} " if with_name else "")
                     + f"| {router} | {_v(m, 'cost_per_prompt', digits=6)} | "
                     + " | ".join(cells) + " |")
    return lines


def ladder_table(result: dict[str, Any]) -> list[str]:
    lines = ["| gate error | router | cost / prompt | true pass | calls / prompt | hull cost at "
             "the ladder's true pass (upper bound) |", "|---|---|---|---|---|---|"]
    for rate, section in result["ladder"].items():
        lad = section["ladder-from-cheapest"]
        lines.append(f"| {float(rate):.1f} | ladder-from-cheapest | {lad['cost_per_prompt']:.6f}"
                     f" | {lad['true_pass_rate']:.4f} | {lad['calls_per_prompt']:.2f} | - |")
        for router, m in section["chosen"].items():
            hull = section["vs_ladder"][router]["hull_cost_at_ladder_quality"]
            lines.append(f"| {float(rate):.1f} | {router} | {m['cost_per_prompt']:.6f} | "
                         f"{m['true_pass_rate']:.4f} | {m['calls_per_prompt']:.2f} | "
                         f"{hull:.6f} |")
    return lines


def benchmark_markdown(result: dict[str, Any]) -> str:
    pub = result["published"]
    unit = "questions (each routed once from its first turn, scored over all turns)" \
        if result.get("grouped") else "prompts"
    lines = [f"# {result['name']}", "",
             f"{result['prompts']:,} held-out {unit} in {result['families']} families; "
             f"models (cheap -> premium): {', '.join(result['models'])}; split "
             f"{result['split']}. Mean score: cheap {result['cheap_score']:.3f}, premium "
             f"{result['premium_score']:.3f}. Dropped: {result['dropped']}.", "",
             "## Single-call routing at operating points chosen on training prompts", "",
             "Each router's knob is chosen on cross-fitted predictions for the training "
             "prompts (the cheapest knob reaching the target share of premium quality there); "
             "the held-out outcome is reported (95% bootstrap CI over prompts). Fixed rows "
             "have one point; ladder-from-cheapest makes several calls (perfect gate).", "",
             *operating_table(result), "",
             "## Whole-knob metrics (held-out prompts)", "",
             "The hull column picks its point on the held-out prompts: an upper bound.", "",
             *curve_table(result), ""]
    if pub.get("apgr") is not None:
        lines += [f"Published best ({pub['source']}): APGR {pub['apgr']:.3f}, CPT(50%) "
                  f"{pub['cpt50']:.1%}. Not like-for-like: our routers train on in-domain "
                  "folds of this benchmark; RouteLLM's trained on Chatbot Arena preferences, "
                  "its augmented ones also on golden labels from MMLU's validation split.", ""]
    lines += ["## Start tier + ladder (the planner at the lam chosen on training prompts; gate "
              "= true verdict flipped at the rate)", "", *ladder_table(result), "",
              "![curve](curve.png)", "", "![ladder frontiers](ladder.png)", ""]
    return "\n".join(lines)


def summary_markdown(results: list[dict[str, Any]]) -> str:
    lines = ["# Router benchmarks: summary", "",
             "## At operating points chosen on training prompts (held-out outcome)", "",
             *operating_table(results[0], with_name=True)[:2]]
    for r in results:
        lines += operating_table(r, with_name=True)[2:]
    lines += ["", "## Whole-knob metrics (held-out prompts; hull = upper bound)", "",
              *curve_table(results[0], with_name=True)[:2]]
    for r in results:
        lines += curve_table(r, with_name=True)[2:]
    return "\n".join(lines) + "\n"
