"""One attempt through the gate, item by item.

Each requested item is parsed against the field's schema and scored on its own by the
verifier (conf/gate: scorer, guards, calibration map). An item passes on its own calibrated
score; the attempt passes only when every pending item passes, and the ladder reads the
worst item's score, never a batch mean. Items that pass are kept; the rest are asked for
again, alone or together with the other failing items of that batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.gate.scorers import Judged
from pipeline.gate.verifier import Verifier
from pipeline.generator.llm_client import CallResult
from pipeline.generator.schemas import gate_text, parse_output
from pipeline.generator.tasks import Task
from router_model.decide.gate import Gate


@dataclass
class ItemVerdicts:
    """An attempt's gate result: per item, and for the attempt as a whole."""

    scores: dict[str, float]  # item -> calibrated score (valid items only)
    values: dict[str, dict[str, Any]]  # item -> parsed output (valid items only)
    passed_items: list[str]
    schema_valid: bool
    similarity: float | None  # the worst item's calibrated score (the ladder's input)
    raw: float | None  # that item's raw score
    passed: bool
    error_kind: str
    schema_error: str | None
    guards: dict[str, list[str]]
    cost_usd: float


async def judge_items(task: Task, pending: list[str], call: CallResult, verifier: Verifier,
                      rules: Gate) -> ItemVerdicts:
    """Schema per item, then the verifier per item; an answer cut off by the provider
    (finish reason `length`) trips the truncation guard of every item it carries."""
    parsed = parse_output(task.spec, call.content, pending)
    valid = [i for i in pending if parsed[i].value is not None]
    language = task.analysis.get("language")
    judged = [Judged(task.field, gate_text(parsed[i].value, limit=None), task.items[i],
                     language) for i in valid]
    v = await verifier.judge(judged)
    cut = call.finish_reason == "length"
    raw = np.where(cut, 0.0, v.raw) if len(v.raw) else v.raw
    calibrated = (np.array([float(verifier.calibrate(task.field, r)) for r in raw])
                  if cut and len(raw) else v.calibrated)
    threshold = rules.threshold(task.field)
    with np.errstate(invalid="ignore"):
        ok = calibrated >= threshold
    schema_valid = len(valid) == len(pending)
    worst = int(np.nanargmin(np.nan_to_num(calibrated, nan=-1.0))) if valid else None
    similarity = None if worst is None else round(float(np.nan_to_num(calibrated[worst])), 4)
    seen = (np.array([np.nan if similarity is None else similarity]), np.array([schema_valid]))
    return ItemVerdicts(
        scores={i: float(np.nan_to_num(s)) for i, s in zip(valid, calibrated, strict=True)},
        values={i: parsed[i].value for i in valid},
        passed_items=[i for i, good in zip(valid, ok, strict=True) if good],
        schema_valid=schema_valid, similarity=similarity,
        raw=None if worst is None else round(float(np.nan_to_num(raw[worst])), 4),
        passed=bool(rules.passes(*seen, threshold)[0]),
        error_kind=str(rules.verdict(*seen, threshold)[0]),
        schema_error=next((parsed[i].error for i in pending if i not in valid), None),
        guards={i: (r + (["truncation"] if cut else [])) for i, r in
                zip(valid, v.reasons, strict=True) if r or cut},
        cost_usd=v.cost_usd)
