"""The gateway's gate: the schema when the request gave a `response_format`, the similarity
gate when it gave a reference, nothing otherwise (the first answer is accepted).

`judge` is the one function the gateway calls for a verdict, so pointing it at another gate
(the calibrated gate of the real-text issue) is a change here only. The similarity is the
generator's MiniLM gate (`pipeline/generator/gate.py`), loaded on the first request that
needs it; the thresholds and the verdict are the one gate's (`router_model/decide/gate.py`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.generator.schemas import GATE_CHARS
from router_model.decide.gate import Gate


@dataclass(frozen=True)
class Verdict:
    similarity: float | None
    schema_valid: bool
    passed: bool
    kind: str  # the contract's error kind (`none` when it passed)
    gated: bool  # False: nothing to judge by, the answer is accepted as it is


def schema_check(content: str | None, response_format: Any) -> bool | None:
    """True/False when `response_format` asks for JSON (a schema, or any object); None
    when it asks for nothing."""
    if not isinstance(response_format, dict) or response_format.get("type") not in (
            "json_schema", "json_object"):
        return None
    try:
        value = json.loads(content or "")
    except json.JSONDecodeError:
        return False
    if response_format["type"] == "json_object":
        return isinstance(value, dict)
    schema = (response_format.get("json_schema") or {}).get("schema")
    if not schema:
        return isinstance(value, dict)
    import jsonschema

    return jsonschema.Draft202012Validator(schema).is_valid(value)


class Judge:
    """Verdicts on the gateway's answers, by the one gate's thresholds."""

    def __init__(self, gate: Gate, embedding_cache: str | None) -> None:
        self.gate = gate
        self.embedding_cache = embedding_cache
        self._embedder: Any = None

    def similarity(self, output: str, reference: str) -> float:
        if self._embedder is None:  # torch and MiniLM only for requests with a reference
            from pipeline.generator.gate import Embedder

            self._embedder = Embedder(self.embedding_cache)
        return float(self._embedder.similarity([output[:GATE_CHARS]], [reference])[0])

    async def judge(self, content: str | None, response_format: Any, reference: str | None,
                    field: str) -> Verdict:
        valid = schema_check(content, response_format)
        sim = None
        if reference and content and valid is not False:
            sim = round(await asyncio.to_thread(self.similarity, content, reference), 4)
        if valid is None and sim is None:
            return Verdict(None, True, True, "none", gated=False)
        schema_ok = valid is not False
        threshold = self.gate.pass_thresholds([field], 1)
        seen = (np.array([np.nan if sim is None else sim]), np.array([schema_ok]))
        if sim is None:  # schema only: a valid answer passes
            kind = "none" if schema_ok else "schema"
        else:
            kind = str(self.gate.verdict(*seen, threshold)[0])
        return Verdict(sim, schema_ok, kind == "none", kind, gated=True)
