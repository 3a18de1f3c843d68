"""The gate's error as the world model draws it: measured, not assumed.

`router-gate-calibrate calibrate.world_error.courses=N` writes the provider simulator's text
at known qualities for N of the world's courses, scores every output with the real gate
(scorer, guards, calibration map) and stores, per field and per quality knot, quantiles of
the calibrated score (conf/simulate/gate_error/<gate>.json). `router-simulate` embeds no
text: for an attempt of true quality q it draws the calibrated score from that table (the
quantile function at a uniform draw, interpolated between the knots around q). A batch is
gated item by item and fails when any item fails, so its score is the lowest of its items'
scores: the minimum of n independent uniforms is 1 - V^(1/n) for one uniform V.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from router_model.config import CONF_DIR

TABLE_FORMAT = 1
LANGUAGE_GROUPS = {"en": "en", "es": "latin", "de": "latin", "fr": "latin", "ru": "other",
                   "zh": "other", "ja": "other"}


def language_group(language: str | None) -> str:
    """English, the other Latin-script course languages, the rest: MiniLM scores them
    differently, so the table keeps them apart."""
    return LANGUAGE_GROUPS.get(str(language), "other")


@dataclass(frozen=True)
class GateErrorTable:
    """Per field: calibrated-score quantiles (at `probs`) for each quality knot."""

    gate_version: str
    knots: np.ndarray  # (K,) true quality
    probs: np.ndarray  # (P,) quantile levels, 0 and 1 included
    fields: dict[str, np.ndarray]  # field -> (K, P) calibrated score quantiles
    source: dict[str, Any]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateErrorTable:
        return cls(gate_version=str(data["gate_version"]),
                   knots=np.asarray(data["knots"], float), probs=np.asarray(data["probs"], float),
                   fields={f: np.asarray(q, float) for f, q in data["fields"].items()},
                   source=dict(data.get("source", {})))

    def to_dict(self) -> dict[str, Any]:
        return {"format": TABLE_FORMAT, "gate_version": self.gate_version,
                "knots": self.knots.round(4).tolist(), "probs": self.probs.round(4).tolist(),
                "fields": {f: q.round(4).tolist() for f, q in self.fields.items()},
                "source": self.source}

    def row(self, field: str, group: str | None = None) -> np.ndarray:
        """The quantile table of a field in a language group (else of the field, else of
        every field)."""
        for key in (f"{field}|{group}", field, "*"):
            if key in self.fields:
                return self.fields[key]
        raise KeyError(f"the gate error table has no field {field!r} and no '*' row")

    def scores(self, field: str, quality: np.ndarray, u: np.ndarray, group: str | None = None
               ) -> np.ndarray:
        """Calibrated scores of outputs of true `quality` at quantile levels `u`."""
        table = self.row(field, group)
        q = np.clip(np.asarray(quality, float), self.knots[0], self.knots[-1])
        k = np.clip(np.searchsorted(self.knots, q, side="right") - 1, 0, len(self.knots) - 2)
        w = (q - self.knots[k]) / (self.knots[k + 1] - self.knots[k])
        out = np.empty(q.shape)
        for j in np.unique(k):
            at = k == j
            low = np.interp(u[at], self.probs, table[j])
            high = np.interp(u[at], self.probs, table[j + 1])
            out[at] = (1.0 - w[at]) * low + w[at] * high
        return out


def batch_minimum_levels(v: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """The quantile level of the lowest of `batch` independent draws, from one uniform v."""
    return 1.0 - np.power(1.0 - v, 1.0 / np.maximum(batch, 1))


def table_path(name: str) -> Path:
    """A table named in conf/simulate (relative paths are relative to conf/simulate/)."""
    path = Path(name)
    return path if path.is_absolute() else Path(CONF_DIR) / "simulate" / path


def read_table(name: str | None) -> GateErrorTable | None:
    if not name:
        return None
    path = table_path(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"simulate.gate_error={name!r}: no table at {path}; measure it with "
            "router-gate-calibrate calibrate.world_error.courses=60, or set "
            "simulate.gate_error=null for the old quality + noise gate")
    return GateErrorTable.from_dict(json.loads(path.read_text()))


def fit_table(gate_version: str, field: np.ndarray, quality: np.ndarray, score: np.ndarray,
              knots: np.ndarray, probs: np.ndarray, source: dict[str, Any],
              min_items: int = 10) -> GateErrorTable:
    """Quantiles of the measured calibrated scores per key (field, or field|group) and
    quality knot (outputs are measured at the knots themselves); a key with fewer than
    `min_items` outputs at some knot is left out (its field's row stands in)."""
    fields = {}
    for name in sorted(set(field.tolist())):
        rows = field == name
        cells = [score[rows & np.isclose(quality, k)] for k in knots]
        if min(len(c) for c in cells) >= min_items:
            fields[str(name)] = np.stack([np.quantile(c, probs) for c in cells])
    fields["*"] = np.stack([np.quantile(score[np.isclose(quality, k)], probs) for k in knots])
    return GateErrorTable(gate_version, np.asarray(knots, float), np.asarray(probs, float),
                          fields, source)
