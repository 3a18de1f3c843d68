"""How well a gate separates good outputs from bad ones, per field and over field groups.

- AUC: good vs bad outputs among those with a valid schema, on the guarded raw score (the
  calibration map is monotone, so it cannot reorder them);
- false pass: the share of bad outputs (wrong format included) the gate accepts at the
  calibrated threshold;
- false fail: the share of good outputs it rejects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from pipeline.gate.calibration import passes

LONG_FIELDS = ("lesson_content", "exercise")  # the "lessons, exercises, sections"
TARGETS = {"false_pass": 0.05, "false_fail": 0.10}  # on long fields


def rates(frame: pd.DataFrame, raw: np.ndarray, calibrated: np.ndarray) -> dict[str, Any]:
    """AUC, false pass and false fail of one slice of examples."""
    good = frame["good"].to_numpy(bool)
    passed = passes(frame, calibrated)
    valid = frame["schema_valid"].to_numpy(bool) & np.isfinite(raw)
    auc = None
    if valid.any() and 0 < good[valid].sum() < valid.sum():
        auc = float(roc_auc_score(good[valid], raw[valid]))
    return {"n": len(frame), "good": int(good.sum()), "bad": int((~good).sum()),
            "auc": auc,
            "false_pass": float(passed[~good].mean()) if (~good).any() else None,
            "false_fail": float((~passed[good]).mean()) if good.any() else None,
            "false_pass_n": int(passed[~good].sum()),
            "false_fail_n": int((~passed[good]).sum())}


def breakdown(frame: pd.DataFrame, raw: np.ndarray, calibrated: np.ndarray,
              by: str = "field") -> dict[str, dict[str, Any]]:
    """`rates` per value of a column (field, language, level), plus the long fields and all."""
    out = {}
    for key, rows in frame.groupby(by):
        pick = rows.index.to_numpy()
        out[str(key)] = rates(rows.reset_index(drop=True), raw[pick], calibrated[pick])
    if by == "field":
        long = frame["field"].isin(LONG_FIELDS).to_numpy()
        if long.any():
            out["long fields"] = rates(frame[long].reset_index(drop=True), raw[long],
                                       calibrated[long])
    out["all"] = rates(frame, raw, calibrated)
    return out


def level_pass_rates(frame: pd.DataFrame, calibrated: np.ndarray) -> dict[str, float]:
    """The share of each level the gate accepts (good should be high, the rest low)."""
    passed = passes(frame, calibrated)
    return {str(level): float(passed[rows.index.to_numpy()].mean())
            for level, rows in frame.groupby("level")}


def met(row: dict[str, Any]) -> dict[str, bool | None]:
    """The long-field targets, met or missed."""
    return {k: None if row.get(k) is None else bool(row[k] <= limit)
            for k, limit in TARGETS.items()}
