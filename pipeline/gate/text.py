"""What the gate reads in an output and a brief: key points, chunks, and two guards.

- `brief_points`: the key points of a Stage-4 brief (its objectives and key points), parsed
  back from the one text the generator sends (`Brief.text()`);
- `chunks`: an output cut into sentence pairs, the units the key points are matched against;
- `detect_language` and `language_mismatch`: the language guard (scripts, then stopwords);
- `injected`: the prompt-injection guard (instructions aimed at a grader or a model);
- `truncated`: the truncation guard (prose that stops mid-sentence).

No model here: plain text rules, so the world model and the tests can use them cheaply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

BRIEF = re.compile(r"^\s*Objectives:\s*(?P<obj>.*?)\.(?:\s*Key points:\s*(?P<kp>.*?)\.)?\s*$",
                   re.S)
SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])|\n+")
MAX_CHUNKS = 40


def brief_points(brief: str) -> list[str]:
    """The objectives and key points of a brief written as `Brief.text()` writes it
    ("Objectives: a; b. Key points: c; d."); any other text is one point."""
    match = BRIEF.match(brief)
    if not match:
        return [brief.strip()] if brief.strip() else []
    parts = [match["obj"], match["kp"] or ""]
    return [p.strip() for part in parts for p in part.split(";") if p.strip()]


def sentences(text: str) -> list[str]:
    """Sentences (and lines) of a text, each at least a few characters long."""
    return [s.strip() for s in SENTENCE_END.split(text) if s and len(s.strip()) > 3]


def chunks(text: str, size: int = 2, limit: int = MAX_CHUNKS) -> list[str]:
    """The text as runs of `size` sentences (at most `limit` of them: a long output is
    sampled evenly, so its end counts as much as its start)."""
    found = sentences(text)
    runs = [" ".join(found[i:i + size]) for i in range(0, len(found), size)] or [text.strip()]
    if len(runs) > limit:
        step = len(runs) / limit
        runs = [runs[int(i * step)] for i in range(limit)]
    return [r for r in runs if r] or [""]


# ---- the language guard ---------------------------------------------------------------------

STOPWORDS = {
    "en": "the and of to is in that it for you with are this on as be can your by an or "
          "from at not have which we will they when each",
    "es": "el la de que y en los las un una es por para con del se su al como más lo "
          "pero sus le ya o este cuando son",
    "de": "der die das und ist nicht ein eine zu den mit von sich des auf für im dem auch "
          "es an werden aus wenn sie wird oder",
    "fr": "le la les de des et est un une que en du pour dans qui sur pas par au avec "
          "ce il sont vous plus cette aux ou",
}
STOPWORD_SETS = {lang: set(words.split()) for lang, words in STOPWORDS.items()}
SCRIPTS = {"ru": re.compile(r"[\u0400-\u04FF]"), "ja": re.compile(r"[\u3040-\u30FF]"),
           "zh": re.compile(r"[\u4E00-\u9FFF]")}
WORD = re.compile(r"[^\W\d_]+", re.U)
MIN_WORDS = 12  # fewer words than this (a title): the guard does not judge


def detect_language(text: str) -> str | None:
    """The text's language among en, es, de, fr, ru, zh, ja, or None when it cannot tell
    (too short, or no known profile)."""
    letters = [c for c in text if c.isalpha()]
    if len(letters) < 20:
        return None
    counts = {lang: len(p.findall(text)) for lang, p in SCRIPTS.items()}
    if counts["ja"] >= 0.05 * len(letters):
        return "ja"
    if counts["zh"] >= 0.3 * len(letters):
        return "zh"
    if counts["ru"] >= 0.3 * len(letters):
        return "ru"
    words = [w.lower() for w in WORD.findall(text)]
    if len(words) < MIN_WORDS:
        return None
    hits = {lang: sum(w in stop for w in words) for lang, stop in STOPWORD_SETS.items()}
    best = max(hits, key=lambda k: hits[k])
    return best if hits[best] >= max(3, 0.08 * len(words)) else None


def language_mismatch(text: str, expected: str | None) -> bool:
    """True when the output is clearly in another language than the course's."""
    if not expected:
        return False
    found = detect_language(text)
    known = {*STOPWORDS, *SCRIPTS}
    return found is not None and expected in known and found != expected


# ---- the injection guard --------------------------------------------------------------------

INJECTION_PATTERNS = [
    r"\b(ignore|disregard|forget)\b.{0,30}\b(previous|prior|above|earlier|all|the)\b.{0,20}"
    r"\b(instructions?|prompts?|rules|rubric|criteria)\b",
    r"\b(note|message|instruction)s? (to|for) the (grader|evaluator|reviewer|judge|model|"
    r"assistant|ai)\b",
    r"\b(grader|evaluator|reviewer|judge)s?\b.{0,40}\b(must|should|shall)\b.{0,40}"
    r"\b(pass|score|rate|accept|approve)",
    r"\b(rate|score|grade|mark)\b.{0,30}\b(as|with)\b.{0,20}\b(1\.0|10/10|100 ?%|full marks|"
    r"perfect|pass(ed|ing)?)\b",
    r"\byou are now\b|\bsystem prompt\b|\bnew instructions?:|\bdeveloper mode\b",
    r"\bas an ai language model\b",
    r"ignora(r)? (todas )?las instrucciones|instrucciones anteriores",
    r"ignorier(e|en sie)? (alle )?(vorherigen |obigen )?(anweisungen|instruktionen)",
    r"ignore[rz]? (toutes )?les instructions|instructions pr[ée]c[ée]dentes",
    r"игнорируй|предыдущие инструкции|инструкции выше",
    r"忽略.{0,6}(指令|指示|说明)|(之前|以上)的(指令|指示)",
    r"(指示|命令).{0,6}無視|無視して",
]
INJECTION = re.compile("|".join(f"(?:{p})" for p in INJECTION_PATTERNS), re.I | re.S)


def injected(text: str) -> bool:
    """Whether the text carries instructions aimed at the grader or the model."""
    return INJECTION.search(text) is not None


# ---- the truncation guard -------------------------------------------------------------------

PROSE_FIELDS = ("course_description", "pedagogical_strategy", "lesson_content", "exercise",
                "quality_check", "input_validation", "min_lessons_check")
TERMINAL = tuple(".!?。！？…)]}»\"'”’」』`:;")
PROSE_LINE = 60  # a last line shorter than this (a heading, a list item) is not judged


def truncated(text: str, field: str) -> bool:
    """Whether a prose field's text stops mid-sentence: its last line is prose (long) and
    does not end with closing punctuation."""
    if field not in PROSE_FIELDS:
        return False
    last = text.rstrip().rsplit("\n", 1)[-1].strip()
    return len(last) >= PROSE_LINE and not last.endswith(TERMINAL)


GUARDS = ("injection", "language", "truncation")


def guard_reasons(text: str, language: str | None, guards: Iterable[str],
                  field: str = "") -> list[str]:
    """Which of the configured guards an output trips (`injection`, `language`,
    `truncation`)."""
    reasons = []
    if "injection" in guards and injected(text):
        reasons.append("injection")
    if "language" in guards and language_mismatch(text, language):
        reasons.append("language")
    if "truncation" in guards and truncated(text, field):
        reasons.append("truncation")
    return reasons
