"""router-gate-calibrate: maps fitted on the train split only, monotone, written and read."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from pipeline.gate.calibrate_cli import run_calibrate
from pipeline.gate.calibration import score_set
from pipeline.gate.examples import LEVELS, realism_set
from pipeline.gate.fit import CalibrateSettings, Fit, fit_entry, held_out, held_out_mask
from router_model.config import Catalog, typed
from router_model.decide.gate import CalibrationMap, gate_version
from tests.helpers import REPO, compose_config

# Lexical scorers only: these tests need no embedding model (the stack is the same code).
LEXICAL = ["gate.scorer=combo", "gate.scorers.combo.components=[novelty,specificity]",
           "calibrate.scorers=[novelty,specificity,combo]", "calibrate.public_data=null",
           "calibrate.prior_sweep=[0.5]"]


def config(tmp, *extra: str):
    cfg = compose_config("router_gate_calibrate", [
        f"paths.reports_dir={tmp}/reports", f"paths.cache_dir={tmp}/cache",
        f"calibrate.map_out={tmp}/maps.json", *LEXICAL, *extra])
    OmegaConf.resolve(cfg)
    return cfg


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    cfg = config(tmp_path_factory.mktemp("cal"))
    gate = Catalog.from_config(cfg).gate
    settings = typed(CalibrateSettings, cfg.calibrate, "calibrate")
    frame = asyncio.run(score_set(realism_set(REPO / "data/gate_examples"), gate,
                                  ["novelty", "specificity"], None))
    fit = Fit("combo", ["novelty", "specificity"], settings.good_share, settings.field_groups)
    return frame, ~held_out_mask(frame, settings), fit, settings


def flipped(frame, rows):
    out = frame.copy()
    out.loc[rows, "label"] = 1.0 - out.loc[rows, "label"]
    out.loc[rows, "good"] = ~out.loc[rows, "good"].astype(bool)
    return out


def test_the_map_is_monotone_and_fitted_on_the_train_split_only(scored):
    frame, train, fit, settings = scored
    assert set(frame.loc[~train, "group"]) == set(settings.test_groups)  # whole briefs out
    entry = fit_entry(frame, train, fit)
    for name, m in entry["maps"].items():
        assert np.all(np.diff(m["x"]) > 0), name
        assert np.all(np.diff(m["y"]) >= 0), name  # monotone knots
    raw = np.linspace(-0.2, 1.2, 301)
    cmap = CalibrationMap.from_dict(entry["maps"])
    for field in ("lesson_content", "course_title", "quality_check", "no_such_field"):
        assert np.all(np.diff(cmap.calibrated(field, raw)) >= 0), field
    # The held-out outputs do not move the fit: relabel all of them, same stack and maps.
    assert fit_entry(flipped(frame, frame.index[~train]), train, fit) == entry
    # The train outputs do: relabel some, and the fit changes.
    assert fit_entry(flipped(frame, frame.index[train][:200]), train, fit) != entry


def test_figures_are_measured_on_the_held_out_outputs_only(scored):
    frame, train, fit, _ = scored
    _, figures = held_out(frame, train, fit)
    assert figures["by_field"]["all"]["n"] == int((~train).sum())
    long = figures["by_field"]["long fields"]
    assert long["good"] + long["bad"] == int(
        (~train & frame["field"].isin(["lesson_content", "exercise"])).sum())


def test_the_command_writes_a_map_the_gate_reads_and_its_version_changes(tmp_path):
    cfg = config(tmp_path, "calibrate.folds=2")
    metrics = run_calibrate(cfg, embedder=None)
    written = json.loads((tmp_path / "maps.json").read_text())
    entry = written["scorers"]["combo"]
    assert entry["stack"]["components"] == ["novelty", "specificity"]
    assert set(entry["train_groups"]).isdisjoint(cfg.calibrate.test_groups)
    report = (tmp_path / "reports/gate/report.md").read_text()
    assert "false pass" in report and "long fields" in report
    assert metrics["counts"]["examples"] == len(realism_set(REPO / "data/gate_examples"))
    gate = Catalog.from_config(compose_config(overrides=[
        f"gate.calibration_map={tmp_path}/maps.json", *LEXICAL[:2]])).gate
    before = gate_version(gate)
    entry["maps"]["*"]["y"][-1] = 0.5  # another map is another gate
    (tmp_path / "maps.json").write_text(json.dumps(written))
    assert gate_version(gate) != before and before.startswith("combo-")


def test_the_realism_set_has_every_level_field_and_enough_briefs():
    examples = realism_set(REPO / "data/gate_examples")
    assert len(examples) >= 300
    assert len({e.group for e in examples}) >= 20
    assert {e.level for e in examples} == set(LEVELS)
    assert len({e.field for e in examples}) == 10
    assert len({e.language for e in examples}) == 7
    assert all(e.schema_valid is False for e in examples if e.level == "wrong_format")
