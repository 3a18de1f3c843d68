"""What the provider simulator answers: written outputs, judge rubrics and section reviews.

- A generation request (the generator's TASK block) gets one object per requested item,
  written by writer.py at the quality the world model drew for the attempt. The simulator
  remembers each item's text and quality (`Memory`), as the author of that text.
- A judge request (`llm_judge`, the JUDGE block) gets the rubric of the judged output's
  quality as the simulator remembers it, seen with the judge's noise; an output it did not
  write (the realism set, a cached answer from an earlier process) is judged by a lexical
  stand-in (how many of the brief's terms it uses). Neither is a measurement of a real judge.
- A section review (the phase-4 quality_check, whose TASK carries the generated items under
  `review`) passes or fails the section and names the items it would regenerate: those whose
  remembered quality, seen with the judge's noise, is below the pass threshold.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.gate.judge import rubric_answer
from pipeline.provider_sim.request_world import Draw
from pipeline.provider_sim.writer import terms_of, write_item
from router_model.files import keyed_rng, text_key

PASS_QUALITY = 0.75


class Memory:
    """The quality of every text the simulator wrote, by the text's key."""

    def __init__(self) -> None:
        self._quality: dict[str, float] = {}
        self._lock = threading.Lock()

    def remember(self, text: str, quality: float) -> None:
        with self._lock:
            self._quality[text_key(text)] = quality

    def quality(self, text: str) -> float | None:
        with self._lock:
            return self._quality.get(text_key(text))


def item_text(obj: Mapping[str, Any]) -> str:
    """The text of an output item as the gate reads it (pipeline/generator/schemas.py)."""
    from pipeline.generator.schemas import gate_text

    return gate_text(dict(obj), limit=None)


@dataclass(frozen=True)
class WriteRequest:
    """What the writer needs from a generation request."""

    field: str
    topic: str
    language: str
    items: list[dict[str, Any]]
    seed: Any


def write_answer(req: WriteRequest, draw: Draw, memory: Memory, sim_seed: int,
                 task_id: str) -> list[dict[str, Any]]:
    """One written object per requested item, remembered with the attempt's quality."""
    items = req.items or [{"id": None, "brief": ""}]
    chars = max(4 * draw.completion_tokens // len(items) - 60, 40)
    out = []
    for item in items:
        rnd = random.Random(f"{sim_seed}|{task_id}|{draw.tier}|{req.seed}|{item.get('id')}")
        obj = write_item(req.field, item.get("id"), str(item.get("brief", "")), req.topic,
                         req.language, draw.quality, chars, rnd)
        memory.remember(item_text(obj), draw.quality)
        out.append(obj)
    return out


def lexical_quality(brief: str, output: str) -> float:
    """A stand-in judgement of text the simulator did not write: the share of the brief's
    terms the output uses, on the seed's scale (all of them: 0.85, none: 0.25)."""
    terms = terms_of(brief)
    low = output.lower()
    used = np.mean([t.lower() in low for t in terms]) if terms else 0.0
    return 0.25 + 0.6 * float(used)


def judge_answer(task: Mapping[str, Any], memory: Memory, judge_sd: float, sim_seed: int
                 ) -> dict[str, Any]:
    """The rubric for one judged output."""
    output = str(task.get("output", ""))
    quality = memory.quality(output)
    if quality is None:
        quality = lexical_quality(str(task.get("brief", "")), output)
    noise = keyed_rng(sim_seed, "judge", text_key(output)).normal(0.0, judge_sd)
    return rubric_answer(quality, noise)


def review_failures(review: list[dict[str, Any]], memory: Memory, judge_sd: float,
                    sim_seed: int) -> list[str]:
    """The reviewed items a judge with `judge_sd` noise finds below the pass threshold."""
    failing = []
    for item in review:
        text = str(item.get("text", ""))
        quality = memory.quality(text)
        if quality is None:
            quality = lexical_quality(str(item.get("brief", "")), text)
        noise = keyed_rng(sim_seed, "review", text_key(text)).normal(0.0, judge_sd)
        if quality + noise < PASS_QUALITY:
            failing.append(str(item.get("id")))
    return failing
