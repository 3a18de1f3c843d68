"""One calibration job: labelled outputs in, fitted gate entries and their measured errors out.

The split keeps every brief (or GSM8K prompt) whole: the stack and the maps are fitted on the
train groups only, every figure is measured on the test groups. A cross-fitted run (each
brief held out once, `folds` folds) gives the same figures on every brief, for resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from pipeline.gate.calibration import (
    calibrate_column,
    fit_maps,
    fit_stack,
    guarded,
    stacked,
)
from pipeline.gate.evaluate import breakdown, level_pass_rates
from pipeline.gate.world_error import WorldErrorSettings
from router_model.config import check
from router_model.files import stable_int


@dataclass(frozen=True)
class CalibrateSettings:
    """`calibrate` in conf/router_gate_calibrate.yaml (the file says what each means)."""

    examples: str | None
    own_examples: str | None
    public_data: str | None
    gsm8k_prompts: int | None
    test_groups: list[str]
    test_share: float
    scorers: list[str]
    good_share: float | None
    prior_sweep: list[float]
    field_groups: dict[str, list[str]]
    folds: int
    map_out: str | None
    report_dir: str
    embedding_cache: str | None
    write_map: bool
    world_error: WorldErrorSettings

    def __post_init__(self) -> None:
        check(0.0 < self.test_share < 1.0, "calibrate.test_share", self.test_share,
              "must be in (0, 1)")
        check(self.good_share is None or 0.0 < self.good_share < 1.0,
              "calibrate.good_share", self.good_share, "must be in (0, 1) or null")
        check(self.folds >= 2, "calibrate.folds", self.folds, "must be >= 2")
        check(bool(self.scorers), "calibrate.scorers", self.scorers, "needs a scorer")


def held_out_mask(frame: pd.DataFrame, settings: CalibrateSettings) -> np.ndarray:
    """Which rows are held out: the listed briefs of the realism set, and a hashed
    `test_share` of the other sources' groups."""
    realism = frame["source"] == "realism"
    listed = realism & frame["group"].isin(settings.test_groups)
    hashed = frame["group"].map(lambda g: stable_int("gate-split", g) % 1000
                                < settings.test_share * 1000)
    return (listed | (~realism & hashed)).to_numpy(bool)


def course_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows of Stage-5 fields (the realism set and your own), not the public benchmark."""
    return (frame["source"] != "gsm8k").to_numpy(bool)


@dataclass(frozen=True)
class Fit:
    """How one scorer is fitted: its name, the combo's components, the traffic prior and
    the field groups that share a map."""

    name: str
    components: Sequence[str]
    good_share: float | None
    groups: dict[str, list[str]]


def fit_entry(frame: pd.DataFrame, train: np.ndarray, fit: Fit) -> dict[str, Any]:
    """The fitted entry of one scorer: its stack (combo) and its maps, from `train` rows."""
    name, components, good_share = fit.name, fit.components, fit.good_share
    entry: dict[str, Any] = {"good_share": good_share, "field_groups": fit.groups}
    if name == "combo":
        fit_on = frame[train & course_rows(frame)]
        entry["stack"] = fit_stack(fit_on, components)
    raw = raw_scores(frame, name, entry)
    course = train & course_rows(frame)
    maps = fit_maps(frame[course].reset_index(drop=True), raw[course], good_share, fit.groups)
    public = train & ~course_rows(frame)
    if public.any():
        extra = fit_maps(frame[public].reset_index(drop=True), raw[public], None)
        maps.update({k: v for k, v in extra.items() if k != "*"})
    entry["maps"] = maps
    entry["n_train"] = int(train.sum())
    return entry


def raw_scores(frame: pd.DataFrame, name: str, entry: dict[str, Any]) -> np.ndarray:
    """A scorer's raw score of every row, guards applied."""
    column = stacked(frame, entry["stack"]) if name == "combo" else frame[name].to_numpy(float)
    return guarded(frame, column)


def measure(frame: pd.DataFrame, rows: np.ndarray, raw: np.ndarray, calibrated: np.ndarray
            ) -> dict[str, Any]:
    """Per field and per language (Stage-5 fields), and the share of each level passed."""
    sub = frame[rows].reset_index(drop=True)
    r, c = raw[rows], calibrated[rows]
    course = course_rows(sub)
    return {"by_field": breakdown(sub, r, c, "field"),
            "by_language": breakdown(sub[course].reset_index(drop=True), r[course], c[course],
                                     "language"),
            "level_pass": level_pass_rates(sub, c)}


def held_out(frame: pd.DataFrame, train: np.ndarray, fit: Fit
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the entry fitted on `train`, its figures on the other rows)."""
    entry = fit_entry(frame, train, fit)
    raw = raw_scores(frame, fit.name, entry)
    calibrated = calibrate_column(frame, raw, entry["maps"])
    return entry, measure(frame, ~train, raw, calibrated)


def cross_fitted(frame: pd.DataFrame, fit: Fit, folds: int) -> dict[str, Any]:
    """Every Stage-5 example scored by maps fitted without its brief (folds by brief)."""
    course = course_rows(frame)
    groups = sorted(frame.loc[course, "group"].unique())
    fold_of = {g: i % folds for i, g in enumerate(groups)}
    fold = frame["group"].map(fold_of).to_numpy()
    raw_all = np.full(len(frame), np.nan)
    cal_all = np.full(len(frame), np.nan)
    for k in range(folds):
        out = course & (fold == k)
        entry = fit_entry(frame, course & ~out, fit)
        raw = raw_scores(frame, fit.name, entry)
        raw_all[out] = raw[out]
        cal_all[out] = calibrate_column(frame, raw, entry["maps"])[out]
    return measure(frame, course, raw_all, cal_all)


def prior_sweep(frame: pd.DataFrame, train: np.ndarray, fit: Fit, shares: Sequence[float]
                ) -> list[dict[str, Any]]:
    """The long fields' false pass and false fail for other traffic priors: the trade-off
    the prior decides."""
    rows = []
    for share in shares:
        _, figures = held_out(frame, train, replace(fit, good_share=share))
        long = figures["by_field"].get("long fields", {})
        rows.append({"good_share": share, "false_pass": long.get("false_pass"),
                     "false_fail": long.get("false_fail"), "auc": long.get("auc")})
    return rows
