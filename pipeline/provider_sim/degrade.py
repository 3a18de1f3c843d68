"""Answers built from the reference brief, degraded until MiniLM sees the world's similarity.

The simulator has no language model: it parrots the brief it was given, first diluting it
with filler words, then replacing its words with unrelated ones, in one fixed order per
reference. For a target similarity it embeds a few candidates with the same MiniLM the gate
uses, on the very text the gate will read, and keeps the closest; the points it measured
are remembered for later attempts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline.generator.gate import Embedder
from pipeline.generator.schemas import GATE_CHARS, gate_text
from router_model.files import keyed_rng

FILLER = ("weather", "garden", "kitchen", "holiday", "music", "river", "coffee", "shoes",
          "window", "paint", "bicycle", "morning", "orange", "market", "pillow", "train",
          "forest", "candle", "blanket", "ticket", "harbor", "violin", "bakery", "meadow")
SOFT = ("indeed", "also", "simply", "really", "quite", "generally", "basically", "actually",
        "somewhat", "rather", "perhaps", "certainly")
FIRST_GRID = (0.15, 0.45, 1.1)  # damage steps, as a share of the reference's words
REFINE_POINTS = 2
TOLERANCE = 0.015


def degrade(reference: str, k: int) -> str:
    """The reference with k steps of damage, in one fixed order per reference: the first n
    steps insert a filler word after a word (dilution: small, smooth losses), the next n
    replace the original words (large losses, down to off-topic)."""
    words = reference.split()
    n = len(words)
    order = keyed_rng("order", reference).permutation(n)
    out = list(words)
    for rank, pos in enumerate(order[:max(k - n, 0)]):
        out[pos] = FILLER[(rank + pos) % len(FILLER)]
    inserted = set(order[:min(k, n)].tolist())
    return " ".join(w + (f" {SOFT[(i * 7) % len(SOFT)]}" if i in inserted else "")
                    for i, w in enumerate(out))


def fill(schema: dict[str, Any], text: str, item_id: str | None, reps: int) -> dict[str, Any]:
    """One object of `schema` written from `text`: ids, enums, short and long strings; the
    last string holds the text `reps` times (a full-length answer)."""
    props: dict[str, Any] = schema.get("properties", {})
    out: dict[str, Any] = {}
    strings = [k for k, p in props.items() if p.get("type") == "string" and "enum" not in p
               and k != "id"]
    for key, prop in props.items():
        if key == "id":
            out[key] = item_id
        elif "enum" in prop:
            out[key] = prop["enum"][0]
        elif prop.get("type") == "array":
            out[key] = [s.strip() for s in text.replace(";", ".").split(".") if s.strip()]
        elif key == strings[-1]:
            out[key] = " ".join([text] * reps)[:prop.get("maxLength", 10**7)]
        elif prop.get("type") == "string":
            out[key] = " ".join(text.split()[:10])[:prop.get("maxLength", 10**7)]
    return out


def repetitions(reference: str, tokens: int) -> tuple[int, int]:
    """(times to repeat the text for ~`tokens` tokens, how many of them the gate reads)."""
    reps = max(1, (4 * tokens) // max(len(reference), 1))
    return reps, min(reps, GATE_CHARS // max(len(reference), 1) + 1)


Builder = Callable[[str], dict[str, Any]]


class Degrader:
    """Finds, per reference, the amount of filler whose gate similarity hits a target."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.curves: dict[tuple[str, str], dict[int, float]] = {}

    def answer(self, reference: str, target: float, build: Builder, shape: str
               ) -> tuple[dict[str, Any], float]:
        """(the answer object, the similarity the gate will measure on it)."""
        n = len(reference.split())
        curve = self.curves.setdefault((reference, shape), {})
        if not curve:
            self._measure(reference, build, curve, {round(g * n) for g in FIRST_GRID})
        k = self._closest(curve, target)
        if abs(curve[k] - target) > TOLERANCE:
            lo, hi = self._bracket(curve, target, n)
            self._measure(reference, build, curve,
                          set(np.linspace(lo, hi, REFINE_POINTS + 2).round().astype(int)))
            k = self._closest(curve, target)
        return build(degrade(reference, k)), curve[k]

    def _measure(self, reference: str, build: Builder, curve: dict[int, float],
                 ks: set[int]) -> None:
        todo = sorted(k for k in ks if k not in curve)
        if not todo:
            return
        texts = [gate_text(build(degrade(reference, k))) for k in todo]
        sims = self.embedder.similarity(texts, [reference] * len(todo))
        curve.update(zip(todo, map(float, sims), strict=True))

    @staticmethod
    def _closest(curve: dict[int, float], target: float) -> int:
        return min(curve, key=lambda k: (abs(curve[k] - target), k))

    @staticmethod
    def _bracket(curve: dict[int, float], target: float, n: int) -> tuple[int, int]:
        """The measured k just above and just below the target (similarity mostly falls with
        k; where it does not, the closest measured point still wins)."""
        above = [k for k, s in curve.items() if s >= target]
        below = [k for k, s in curve.items() if s < target]
        return (max(above) if above else 0), (min(below) if below else 2 * n)
