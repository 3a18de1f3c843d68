"""What the provider simulator writes: field-specific text of the quality the world drew.

No language model here: each output is assembled from the brief's own terms and the
per-language sentence templates in phrases.py, at the true quality q the world model drew
for the attempt (seed scale, 0.75 passes). How q shapes the text is a fixed, documented part
of the world (data/README.md, "How the gate's error arises"):

- concrete sentences about the brief's points make up `specific = (q - 0.60) / 0.25` of the
  text (clipped to [0, 1]): every point explained with numbers, a worked case or a mistake;
- off-topic drift, sentences about another course's terms, makes up `(0.50 - q) / 0.25`;
- the rest only names the brief's points (vague) or ignores the brief (generic), more of the
  generic the lower q is;
- below q = 0.60 an output stops mid-sentence with probability 0.3 (a truncated answer),
  and below 0.50 a non-English course gets an English answer with probability 0.5.

The gate then scores this text for real: the gate's errors are the scorer's, not a rate.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.gate.text import brief_points
from pipeline.provider_sim.phrases import PHRASES
from pipeline.world.topics import TOPICS

LEADS = re.compile(
    r"^(name a course that teaches|describe what learners of|after the course learners can|"
    r"show learners how to|a worked example of|common mistakes with|explain|introduce|"
    r"learners|teach|covers|starts from|builds on|state)\s+", re.I)
CUTS = re.compile(r"\s+(in the context of|to \w+ learners|will build|through|using)(\s+|$)",
                  re.I)
TRUNCATE_BELOW, TRUNCATE_P = 0.60, 0.3
ENGLISH_BELOW, ENGLISH_P = 0.50, 0.5


def terms_of(brief: str) -> list[str]:
    """The brief's points reduced to their terms ("Explain loops in the context of lists"
    -> "loops"), at most six words each."""
    out = []
    for point in brief_points(brief):
        core = CUTS.split(LEADS.sub("", point.strip()), maxsplit=1)[0]
        words = core.split()[:6]
        if words and " ".join(words) not in out:
            out.append(" ".join(words))
    return out or [brief[:40] or "the topic"]


@dataclass(frozen=True)
class Style:
    """What an output of quality q is made of (shares of its sentences)."""

    specific: float
    vague: float
    drift: float
    truncate: bool
    language: str

    @classmethod
    def of(cls, quality: float, language: str, rnd: random.Random) -> Style:
        specific = float(np.clip((quality - 0.60) / 0.25, 0.0, 1.0))
        drift = float(np.clip((0.50 - quality) / 0.25, 0.0, 1.0))
        rest = max(1.0 - specific - drift, 0.0)
        vague = rest * float(np.clip((quality - 0.35) / 0.30, 0.0, 1.0))
        truncate = quality < TRUNCATE_BELOW and rnd.random() < TRUNCATE_P
        english = language != "en" and quality < ENGLISH_BELOW and rnd.random() < ENGLISH_P
        lang = "en" if english or language not in PHRASES else language
        return cls(specific, vague, drift, truncate, lang)

    def kind(self, rnd: random.Random) -> str:
        u = rnd.random()
        if u < self.specific:
            return "specific"
        if u < self.specific + self.drift:
            return "drift"
        return "vague" if u < self.specific + self.drift + self.vague else "generic"


@dataclass
class Writer:
    """Fills templates for one output item."""

    style: Style
    terms: list[str]
    drift_terms: list[str]
    topic: str
    rnd: random.Random
    turn: int = 0

    def phrase(self, key: str, kind: str | None = None) -> str:
        """One filled template of `key` (`kind` picks on-brief or drifting terms)."""
        table = PHRASES[self.style.language]
        pool = self.drift_terms if kind == "drift" else self.terms
        t = pool[self.turn % len(pool)]
        u = pool[(self.turn + 1) % len(pool)]
        self.turn += 1
        text = self.rnd.choice(table[key])
        return text.format(t=t, T=t[:1].upper() + t[1:], u=u, U=u[:1].upper() + u[1:],
                           n=self.rnd.randint(2, 9), m=self.rnd.randint(10, 99),
                           topic=self.topic)

    def sentence(self) -> str:
        kind = self.style.kind(self.rnd)
        key = {"drift": "specific"}.get(kind, kind)
        return self.phrase(key, kind)

    def prose(self, chars: int) -> str:
        """Sentences until `chars` characters, in paragraphs of four."""
        out: list[str] = []
        size = 0
        while size < chars or not out:
            s = self.sentence()
            out.append(s)
            size += len(s) + 1
        paragraphs = [" ".join(out[i:i + 4]) for i in range(0, len(out), 4)]
        text = "\n\n".join(paragraphs)
        return cut_mid_sentence(text) if self.style.truncate else text

    def pick(self, good: str, weak: str, generic: str) -> str:
        """A short text (title, outcome) of the kind the style draws."""
        kind = self.style.kind(self.rnd)
        key = {"specific": good, "drift": good, "vague": weak, "generic": generic}[kind]
        return self.phrase(key, kind)


def cut_mid_sentence(text: str, share: float = 0.6) -> str:
    """The text cut off mid-sentence after `share` of it (a truncated answer)."""
    stop = max(int(len(text) * share), 1)
    space = text.rfind(" ", 0, stop)
    return text[:space if space > 0 else stop].rstrip(" ,.;:!?。！？")


def drift_terms(topic: str, rnd: random.Random) -> list[str]:
    """Another course's terms: what an off-topic answer talks about."""
    pool = [(t, c) for d in TOPICS.values() for t, c in d.items() if t != topic]
    _, concepts = rnd.choice(pool)
    return rnd.sample(concepts, 4)


def write_item(field: str, item_id: str | None, brief: str, topic: str, language: str,
               quality: float, chars: int, rnd: random.Random) -> dict[str, Any]:
    """One output object of `field` (its schema's keys) of true quality `quality`, about
    `chars` characters long."""
    w = Writer(Style.of(quality, language, rnd), terms_of(brief), drift_terms(topic, rnd),
               topic, rnd)
    if field in ("course_title", "section_title"):
        return {"title": w.pick("title_good", "title_weak", "title_generic")[:300]}
    if field == "learning_outcomes":  # an outcome and how it shows, per term, to `chars`
        outcomes: list[str] = []
        while len(outcomes) < max(len(w.terms), 2) or (sum(map(len, outcomes)) < chars
                                                       and len(outcomes) < 12):
            outcomes.append(f"{w.pick('outcome_good', 'outcome_weak', 'vague')}. "
                            f"{w.sentence()}")
        return {"outcomes": outcomes}
    if field == "course_description":
        return {"description": w.prose(chars)}
    if field == "pedagogical_strategy":
        return {"strategy": w.prose(chars)}
    if field == "lesson_content":
        title = w.pick("lesson_title", "lesson_title", "generic")[:120]
        return {"id": item_id, "title": title, "content": w.prose(max(chars - len(title), 40))}
    if field == "exercise":
        prompt = w.pick("exercise_good", "exercise_weak", "generic")
        solution = w.pick("solution_good", "solution_weak", "generic")
        return {"id": item_id, "prompt": f"{prompt} {w.prose(int(chars * 0.5))}".strip(),
                "solution": f"{solution} {w.prose(int(chars * 0.3))}".strip()}
    # the validation fields: a verdict and notes
    notes = w.pick("check_good", "check_weak", "generic")
    return {"verdict": "pass", "notes": f"{notes} {w.prose(max(chars - len(notes), 20))}"}
