"""`router-gate-calibrate`: fit the gate's calibration on labelled outputs and measure it.

Reads the realism set (data/gate_examples), your own labelled outputs (JSONL) and RouteLLM's
GSM8K answers when present; scores every output with every scorer; fits each scorer's stack
and isotonic maps on the train split; measures AUC, false pass and false fail on the test
split (and cross-fitted by brief); writes the maps to conf/gate's calibration file and the
figures to reports/gate/.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline.gate.calibration import embedder_encode, score_set
from pipeline.gate.examples import Example, gsm8k_set, own_examples, realism_set
from pipeline.gate.fit import (
    CalibrateSettings,
    Fit,
    cross_fitted,
    held_out,
    held_out_mask,
    prior_sweep,
)
from pipeline.gate.report import format_report
from pipeline.gate.verifier import BASE_SCORERS, Verifier, scorer_settings
from pipeline.gate.world_error import measure
from pipeline.world.gate_error import table_path
from pipeline.world.settings import world_settings
from router_model.cli_errors import user_errors
from router_model.config import CONF_DIR, Catalog, GateConfig, typed
from router_model.decide.gate import calibration_file, gate_version
from router_model.files import atomic_write_text, digest

MAP_FORMAT = 1


def load_examples(s: CalibrateSettings) -> list[Example]:
    out: list[Example] = []
    if s.examples:
        out += realism_set(s.examples)
    if s.own_examples:
        out += own_examples(s.own_examples)
    if s.public_data:
        out += gsm8k_set(s.public_data, s.gsm8k_prompts)
    if not out:
        raise ValueError("calibrate: no labelled examples (set calibrate.examples or "
                         "calibrate.own_examples)")
    return out


def needed_scorers(gate: GateConfig, names: list[str]) -> list[str]:
    """The base scorers to run: the listed ones and the combo's components."""
    base = {n for n in names if n != "combo"}
    if "combo" in names:
        base |= set(scorer_settings(gate, "combo").components)
    return [n for n in BASE_SCORERS if n in base]


def calibrate(gate: GateConfig, s: CalibrateSettings, embedder: Any = None,
              llm: Any = None) -> dict[str, Any]:
    """Score, fit on the train split, measure on the test split; returns the fitted entries
    and the figures (nothing written)."""
    examples = load_examples(s)
    base = needed_scorers(gate, s.scorers)
    if embedder is None and {"brief_cosine", "keypoint_coverage"} & set(base):
        from pipeline.generator.gate import Embedder

        embedder = Embedder(s.embedding_cache)
    encode = embedder_encode(embedder) if embedder is not None else None
    frame = asyncio.run(score_set(examples, gate, base, encode, llm))
    train = ~held_out_mask(frame, s)
    components = scorer_settings(gate, "combo").components if "combo" in s.scorers else []

    def fit(name: str) -> Fit:
        return Fit(name, components, s.good_share, s.field_groups)

    entries, figures = {}, {}
    for name in s.scorers:
        entries[name], figures[name] = held_out(frame, train, fit(name))
        entries[name]["train_groups"] = sorted(frame.loc[train, "group"].unique().tolist())
    default = gate.scorer if gate.scorer in s.scorers else s.scorers[0]
    return {"entries": entries, "figures": figures, "default": default,
            "cross_fitted": cross_fitted(frame, fit(default), s.folds),
            "prior_sweep": prior_sweep(frame, train, fit(default), s.prior_sweep),
            "counts": counts(frame, train), "examples_hash": digest([e.id for e in examples])}


def counts(frame: Any, train: Any) -> dict[str, Any]:
    return {"examples": len(frame), "train": int(train.sum()), "test": int((~train).sum()),
            "briefs": int(frame.loc[frame["source"] == "realism", "group"].nunique()),
            "by_level": frame["level"].value_counts().to_dict(),
            "by_field": frame["field"].value_counts().to_dict(),
            "gsm8k": int((frame["source"] == "gsm8k").sum())}


def write_map(path: Path, result: dict[str, Any]) -> None:
    """Add (or replace) the fitted scorers' entries in the calibration file."""
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update({"format": MAP_FORMAT, "fitted_by": "router-gate-calibrate",
                 "examples_hash": result["examples_hash"]})
    data.setdefault("scorers", {}).update(result["entries"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def world_table(cfg: DictConfig, s: CalibrateSettings, embedder: Any) -> dict[str, Any]:
    """Measure the fitted gate on the provider simulator's text and write the world's gate
    error table; returns where it went and what it holds."""
    catalog = Catalog.from_config(cfg)
    world = world_settings(cfg.simulate)
    verifier = Verifier(catalog.gate, embedder_encode(embedder))
    table = measure(verifier, world, catalog, s.world_error)
    target = table_path(s.world_error.out or world.gate_error or "gate_error/default.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, json.dumps(table.to_dict(), indent=1) + "\n")
    return {"file": str(target), "gate_version": table.gate_version, **table.source}


def run_calibrate(cfg: DictConfig, embedder: Any = None) -> dict[str, Any]:
    """The command: calibrate, write the map and the report (and, when asked, the world's
    gate error table); returns the metrics."""
    gate = Catalog.from_config(cfg).gate
    s = typed(CalibrateSettings, cfg.calibrate, "calibrate")
    if embedder is None:
        from pipeline.generator.gate import Embedder

        embedder = Embedder(s.embedding_cache)
    result = calibrate(gate, s, embedder)
    target = Path(s.map_out) if s.map_out else calibration_file(gate)
    if s.write_map and target is not None:
        write_map(target, result)
    metrics = {k: v for k, v in result.items() if k != "entries"}
    metrics["map_file"] = str(target) if s.write_map and target else None
    metrics["gate_version"] = gate_version(gate)
    if s.world_error.courses > 0:
        metrics["world_error"] = world_table(cfg, s, embedder)
    out = Path(s.report_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    (out / "report.md").write_text(format_report(metrics))
    return metrics


@hydra.main(config_path=CONF_DIR, config_name="router_gate_calibrate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    with user_errors("router-gate-calibrate"):
        metrics = run_calibrate(cfg)
    print(format_report(metrics, brief=True))
