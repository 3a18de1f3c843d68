"""Scoring a labelled set and fitting the gate on it: the stack and the isotonic maps.

Everything here is fitted on the train split only (`router-gate-calibrate` passes it in);
the maps are the knots of scikit-learn's isotonic regression of the labelled quality on the
raw score, one per field with enough examples, plus one over all fields (`*`) for the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from pipeline.gate.examples import PASSING, Example
from pipeline.gate.scorers import Encode, Judged
from pipeline.gate.text import guard_reasons
from pipeline.gate.verifier import base_scorer
from router_model.config import GateConfig
from router_model.decide.gate import ANY_FIELD, CalibrationMap

MIN_FIELD_EXAMPLES = 40  # fewer train examples of a field: it uses the pooled map


def embedder_encode(embedder: Any) -> Encode:
    """The MiniLM embedder as the scorers' async `encode`."""

    async def encode(texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(embedder.encode, texts)

    return encode


async def score_set(examples: Sequence[Example], gate: GateConfig, scorers: Sequence[str],
                    encode: Encode | None, llm: Any = None) -> pd.DataFrame:
    """One row per example: its labels, the guards it trips and each scorer's raw score
    (NaN where the schema failed: the scorers never see those outputs)."""
    frame = pd.DataFrame([{"id": e.id, "source": e.source, "group": e.group,
                           "field": e.field, "level": e.level, "label": e.label,
                           "good": e.good, "language": e.language,
                           "schema_valid": e.schema_valid} for e in examples])
    valid = [e for e in examples if e.schema_valid]
    index = frame.index[frame["schema_valid"].to_numpy(bool)]
    items = [Judged(e.field, e.text, e.brief, e.language) for e in valid]
    frame["guard"] = ""
    frame.loc[index, "guard"] = [",".join(guard_reasons(i.text, i.language, gate.guards,
                                                        i.field)) for i in items]
    for name in scorers:
        frame[name] = np.nan
        if items:
            scores = await base_scorer(gate, name, encode, llm).score(items)
            frame.loc[index, name] = scores.raw
    return frame


def guarded(frame: pd.DataFrame, column: str | np.ndarray) -> np.ndarray:
    """Raw scores with the guards applied: 0 where a guard tripped."""
    raw = frame[column].to_numpy(float) if isinstance(column, str) else np.asarray(column)
    return np.where(frame["guard"].to_numpy(str) != "", 0.0, raw)


def fit_stack(frame: pd.DataFrame, components: Sequence[str]) -> dict[str, Any]:
    """The combo's logistic stack: good vs not good on the components' raw scores, fitted on
    the outputs no guard catches (the guards decide the others)."""
    rows = frame[frame["schema_valid"] & (frame["guard"] == "")]
    x = rows[list(components)].to_numpy(float)
    model = LogisticRegression(C=1.0, max_iter=1000).fit(x, rows["good"].to_numpy(bool))
    return {"components": list(components), "coef": model.coef_[0].round(6).tolist(),
            "intercept": round(float(model.intercept_[0]), 6)}


def stacked(frame: pd.DataFrame, stack: dict[str, Any]) -> np.ndarray:
    """The combo's raw score of every row (NaN where the schema failed)."""
    x = frame[stack["components"]].to_numpy(float)
    return 1.0 / (1.0 + np.exp(-(stack["intercept"] + x @ np.asarray(stack["coef"]))))


def _knots(raw: np.ndarray, label: np.ndarray, weight: np.ndarray) -> dict[str, list[float]]:
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(raw, label, sample_weight=weight)
    return {"x": np.round(iso.X_thresholds_, 6).tolist(),
            "y": np.round(iso.y_thresholds_, 6).tolist()}


def prior_weights(good: np.ndarray, good_share: float | None) -> np.ndarray:
    """Example weights that give the good outputs `good_share` of the total (None: every
    example counts once, right when the labelled set is a random sample of your traffic)."""
    w = np.ones(len(good))
    if good_share is not None and good.any() and (~good).any():
        w[good] = good_share / good.sum()
        w[~good] = (1.0 - good_share) / (~good).sum()
    return w


def fit_maps(frame: pd.DataFrame, raw: np.ndarray, good_share: float | None,
             groups: dict[str, list[str]] | None = None) -> dict[str, dict[str, list[float]]]:
    """Isotonic maps of labelled quality on the guarded raw score: one per field group
    (`groups`, name -> fields; each field of a group gets the group's map), one per other
    field with enough schema-valid examples, and one over all fields (`*`). The examples are
    weighted so good ones make up `good_share` of the traffic each map is fitted for."""
    ok = frame["schema_valid"].to_numpy(bool) & np.isfinite(raw)
    label = frame["label"].to_numpy(float)
    good = frame["good"].to_numpy(bool)
    fields = frame["field"].to_numpy(str)

    def knots(pick: np.ndarray) -> dict[str, list[float]]:
        return _knots(raw[pick], label[pick], prior_weights(good[pick], good_share))

    maps = {ANY_FIELD: knots(np.flatnonzero(ok))}
    grouped = {f for members in (groups or {}).values() for f in members}
    for members in (groups or {}).values():
        pick = np.flatnonzero(ok & np.isin(fields, members))
        if len(pick) >= MIN_FIELD_EXAMPLES:
            fitted = knots(pick)
            maps.update({f: fitted for f in members})
    for field in sorted(set(fields[ok]) - grouped):
        pick = np.flatnonzero(ok & (fields == field))
        if len(pick) >= MIN_FIELD_EXAMPLES:
            maps[field] = knots(pick)
    return maps


def calibrate_column(frame: pd.DataFrame, raw: np.ndarray, maps: dict[str, Any]
                     ) -> np.ndarray:
    """The calibrated score of every row under `maps` (NaN where the schema failed)."""
    cmap = CalibrationMap.from_dict(maps)
    out = np.full(len(frame), np.nan)
    for field, rows in frame.groupby("field"):
        pick = rows.index.to_numpy()
        out[pick] = cmap.calibrated(str(field), raw[pick])
    return out


def passes(frame: pd.DataFrame, calibrated: np.ndarray, threshold: float = PASSING
           ) -> np.ndarray:
    """The gate's verdict: schema valid and calibrated score at or above the threshold."""
    with np.errstate(invalid="ignore"):
        return frame["schema_valid"].to_numpy(bool) & (calibrated >= threshold)
