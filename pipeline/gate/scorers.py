"""The gate's scorers: each turns (output, brief) pairs into raw scores in [0, 1].

- `brief_cosine`: MiniLM cosine of the output's first 800 characters and the whole brief
  (the gate this project started with);
- `keypoint_coverage`: for each of the brief's key points (objectives, outline items), the
  best MiniLM cosine over the output's sentence pairs; their mean;
- `novelty`: the share of the output's distinct content words that the brief does not
  contain (an output that only repeats the brief's words says nothing new);
- `specificity`: the share of the output's sentences with something concrete in them: a
  number, code or a formula, a quotation, an "for example" (in the seven course languages);
- `llm_judge` (pipeline/gate/judge.py): gpt-oss-20b scoring the output on a short rubric;
- `combo`: a logistic stack of other scorers, fitted with the calibration
  (`router-gate-calibrate`) on the train split of the labelled set.

Raw scores mean nothing on their own: the calibration map (router_model/decide/gate.py)
turns them into the seed's quality scale, where 0.75 passes and 0.60 is severe.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pipeline.gate.text import brief_points, chunks, sentences

Encode = Callable[[list[str]], Awaitable[np.ndarray]]  # texts -> normalised vectors
GATE_CHARS = 800  # brief_cosine reads this much: about MiniLM's 256-token window


@dataclass(frozen=True)
class Judged:
    """One output item to score: its field, all of its text, its brief, its language."""

    field: str
    text: str
    brief: str
    language: str | None = None


@dataclass
class Scores:
    """Raw scores of a batch, each component's scores, and what scoring cost."""

    raw: np.ndarray
    parts: dict[str, np.ndarray] = field(default_factory=dict)
    cost_usd: float = 0.0
    calls: int = 0


class Scorer(Protocol):
    name: str

    async def score(self, items: Sequence[Judged]) -> Scores: ...


@dataclass
class BriefCosine:
    """MiniLM cosine of the output's first `chars` characters and the brief."""

    encode: Encode
    chars: int = GATE_CHARS
    name: str = "brief_cosine"

    async def score(self, items: Sequence[Judged]) -> Scores:
        if not items:
            return Scores(np.zeros(0))
        vectors = await self.encode([i.text[:self.chars] for i in items]
                                    + [i.brief for i in items])
        n = len(items)
        raw = np.clip(np.einsum("ij,ij->i", vectors[:n], vectors[n:]), 0.0, 1.0)
        return Scores(raw, {self.name: raw})


@dataclass
class KeypointCoverage:
    """Mean over the brief's key points of the best cosine with one of the output's chunks
    (runs of `chunk_sentences` sentences, at most `max_chunks` of them)."""

    encode: Encode
    chunk_sentences: int = 2
    max_chunks: int = 40
    name: str = "keypoint_coverage"

    async def score(self, items: Sequence[Judged]) -> Scores:
        if not items:
            return Scores(np.zeros(0))
        cut = [chunks(i.text, self.chunk_sentences, self.max_chunks) for i in items]
        points = [brief_points(i.brief) or [i.brief] for i in items]
        flat = [t for c, p in zip(cut, points, strict=True) for t in (*c, *p)]
        vectors = await self.encode(flat)
        raw, start = np.zeros(len(items)), 0
        for k, (c, p) in enumerate(zip(cut, points, strict=True)):
            ch = vectors[start:start + len(c)]
            pt = vectors[start + len(c):start + len(c) + len(p)]
            start += len(c) + len(p)
            raw[k] = float(np.clip((pt @ ch.T).max(axis=1).mean(), 0.0, 1.0))
        return Scores(raw, {self.name: raw})


WORDS = re.compile(r"[^\W_]+", re.U)
CJK = re.compile(r"[\u3040-\u30FF\u4E00-\u9FFF]")


def content_terms(text: str) -> set[str]:
    """Content words (4+ letters, lower case; digits count as words) and, for Chinese and
    Japanese, character pairs."""
    words = {w.lower() for w in WORDS.findall(text)
             if not CJK.search(w) and (len(w) >= 4 or w.isdigit())}
    han = "".join(CJK.findall(text))
    return words | {han[i:i + 2] for i in range(len(han) - 1)}


@dataclass
class Novelty:
    """Share of the output's distinct content terms that are not in the brief."""

    name: str = "novelty"

    async def score(self, items: Sequence[Judged]) -> Scores:
        raw = np.array([self.one(i.text, i.brief) for i in items], float)
        return Scores(raw, {self.name: raw})

    @staticmethod
    def one(text: str, brief: str) -> float:
        terms = content_terms(text)
        if not terms:
            return 0.0
        return len(terms - content_terms(brief)) / len(terms)


CONCRETE = re.compile(
    r"\d|[=(){}\[\]/<>+*%€$#_]|[\"“”«»„「」]|\b(for example|for instance|e\.g\.|such as|"
    r"por ejemplo|zum beispiel|z\. ?b\.|par exemple|например|к примеру)\b|例如|比如|例えば",
    re.I)


@dataclass
class Specificity:
    """Share of the output's sentences that hold something concrete."""

    name: str = "specificity"

    async def score(self, items: Sequence[Judged]) -> Scores:
        raw = np.array([self.one(i.text) for i in items], float)
        return Scores(raw, {self.name: raw})

    @staticmethod
    def one(text: str) -> float:
        found = sentences(text)
        return float(np.mean([bool(CONCRETE.search(s)) for s in found])) if found else 0.0


@dataclass
class Combo:
    """A logistic stack of component scorers: sigmoid(intercept + coef . scores), with the
    coefficients `router-gate-calibrate` fitted on the labelled set's train split."""

    components: list[Any]
    coef: list[float]
    intercept: float
    name: str = "combo"

    async def score(self, items: Sequence[Judged]) -> Scores:
        if not items:
            return Scores(np.zeros(0))
        parts: dict[str, np.ndarray] = {}
        cost, calls = 0.0, 0
        for scorer in self.components:
            got = await scorer.score(items)
            parts.update(got.parts)
            cost, calls = cost + got.cost_usd, calls + got.calls
        x = np.column_stack([parts[s.name] for s in self.components])
        raw = 1.0 / (1.0 + np.exp(-(self.intercept + x @ np.asarray(self.coef))))
        return Scores(raw, parts, cost, calls)


def stack_features(parts: dict[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    """The stack's inputs, in its component order."""
    return np.column_stack([parts[n] for n in names])
