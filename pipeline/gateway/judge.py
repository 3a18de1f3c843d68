"""The gateway's gate: the schema when the request gave a `response_format`, the similarity
gate when it gave a reference, nothing otherwise (the first answer is accepted).

`judge` is the one function the gateway calls for a verdict. The score is the generator's
gate (`conf/gate`: scorer, guards, calibration map, through `pipeline.gate.verifier`) on the
answer's text (a JSON answer's string values), against the request's reference, on the
seed's quality scale; MiniLM is loaded on the first request that needs it. The thresholds and
the verdict are the one gate's (`router_model/decide/gate.py`). Without a gate config (a
caller's own `Judge`) the score is the raw MiniLM cosine of the first 800 characters.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.generator.schemas import GATE_CHARS
from router_model.config import GateConfig
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


def answer_text(content: str) -> str:
    """What the gate reads in an answer: a JSON answer's string values in order (ids,
    verdicts and listed ids left out, as the generator's gate_text does), else the text."""
    try:
        value = json.loads(content)
    except json.JSONDecodeError:
        return content
    parts: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            parts.append(v)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for k, x in v.items():
                if k not in ("id", "verdict", "failing_items"):
                    walk(x)

    walk(value)
    return "\n".join(parts) if parts else content


class Judge:
    """Verdicts on the gateway's answers, by the one gate's thresholds."""

    def __init__(self, gate: Gate, embedding_cache: str | None,
                 config: GateConfig | None = None) -> None:
        self.gate = gate
        self.embedding_cache = embedding_cache
        self.config = config
        self._embedder: Any = None
        self._verifier: Any = None

    def _load(self) -> Any:
        if self._embedder is None:  # torch and MiniLM only for requests with a reference
            from pipeline.generator.gate import Embedder

            self._embedder = Embedder(self.embedding_cache)
        return self._embedder

    def similarity(self, output: str, reference: str) -> float:
        return float(self._load().similarity([output[:GATE_CHARS]], [reference])[0])

    async def score(self, content: str, reference: str, field: str,
                    language: str | None) -> float:
        """The answer's calibrated score (the raw cosine without a gate config)."""
        if self.config is None:
            return await asyncio.to_thread(self.similarity, content, reference)
        if self._verifier is None:
            from pipeline.gate.verifier import Verifier

            embedder = self._load()

            async def encode(texts: list[str]) -> np.ndarray:
                return await asyncio.to_thread(embedder.encode, texts)

            self._verifier = Verifier(self.config, encode)
        from pipeline.gate.scorers import Judged

        v = await self._verifier.judge([Judged(field, answer_text(content), reference,
                                               language)])
        return float(v.calibrated[0])

    async def judge(self, content: str | None, response_format: Any, reference: str | None,
                    field: str, language: str | None = None) -> Verdict:
        valid = schema_check(content, response_format)
        sim = None
        if reference and content and valid is not False:
            sim = round(await self.score(content, reference, field, language), 4)
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
