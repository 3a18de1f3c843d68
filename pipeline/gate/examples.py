"""The labelled realism set (data/gate_examples/) and RouteLLM's public GSM8K answers.

Every output of the realism set is written by hand or derived from hand-written text by a
fixed rule, and labelled by construction with a quality on the seed's scale (`LEVELS`):
good on-brief outputs pass (0.85), everything else fails, weak on-brief ones in the
retry band (0.65), the rest severely. Each example is the completion a provider would
return for a one-item request, so the generator's own parser decides schema validity.
The GSM8K answers are real model outputs (Mixtral-8x7B and GPT-4) with their graded
correctness, read from the shared public data and never copied into the repository.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.generator.plan import Brief
from pipeline.generator.schemas import OUTPUTS, gate_text, parse_output

# level: the quality it stands for on the seed's scale (0.75 passes, below 0.60 is severe)
LEVELS = {"good": 0.85, "weak": 0.65, "truncated": 0.55, "generic": 0.45,
          "wrong_language": 0.30, "off_brief": 0.25, "injected": 0.10, "wrong_format": 0.0}
PASSING = 0.75
# The fields of the set and what their main text key is (the one truncation and injection act on).
MAIN_KEY = {"course_title": "title", "section_title": "title",
            "course_description": "description", "pedagogical_strategy": "strategy",
            "learning_outcomes": "outcomes", "lesson_content": "content",
            "exercise": "prompt", "quality_check": "notes", "input_validation": "notes",
            "min_lessons_check": "notes"}
CHECKS = ("input_validation", "min_lessons_check")
LONG_FIELDS = ("lesson_content", "exercise", "course_description", "pedagogical_strategy")
ITEM_IDS = {"lesson_content": "s0-l0", "exercise": "s0-l0-e0"}


@dataclass(frozen=True)
class Example:
    """One labelled output: what was asked (field, brief, language) and what came back."""

    id: str
    source: str  # realism | gsm8k
    group: str  # the brief (realism) or prompt (gsm8k) it belongs to: splits keep groups whole
    field: str
    level: str
    label: float  # quality on the seed's scale
    language: str | None
    brief: str
    content: str  # the completion text, as a provider returns it
    text: str  # what the scorers read (empty when the schema failed)
    schema_valid: bool

    @property
    def good(self) -> bool:
        return self.label >= PASSING


def field_briefs(spec: dict[str, Any]) -> dict[str, str]:
    """Each field's brief text, built as pipeline/generator/tasks.py builds it."""
    b = {k: Brief(**v).text() for k, v in spec["briefs"].items()}
    section = b["section"]
    first = spec["briefs"]["section"]["objectives"][0]
    return {"course_title": b["course_title"], "course_description": b["course_description"],
            "learning_outcomes": b["learning_outcomes"],
            "pedagogical_strategy": b["pedagogical_strategy"], "section_title": section,
            "lesson_content": b["lesson"], "exercise": b["lesson"],
            "quality_check": f"Quality review of section 1. {section}",
            "input_validation": f"Course plan for {spec['topic']}: {first}",
            "min_lessons_check": f"The course {spec['topic']} has 6 lessons in 2 sections; "
                                 "at least 5 are required."}


def item(field: str, value: Any) -> dict[str, Any]:
    """A hand-written value as the field's schema object."""
    if isinstance(value, dict):
        out = dict(value)
    elif field in ("course_title", "section_title"):
        out = {"title": value}
    elif field == "learning_outcomes":
        out = {"outcomes": list(value)}
    else:
        out = {MAIN_KEY[field]: value}
    if field in ITEM_IDS:
        out["id"] = ITEM_IDS[field]
    if field in ("quality_check", *CHECKS):
        out = {"verdict": "pass", **out}
    return out


def wrapped(field: str, obj: dict[str, Any]) -> str:
    """The completion a one-item request gets: batched fields answer with an array."""
    spec = OUTPUTS[field]
    return json.dumps({spec.list_key: [obj]} if spec.batched else obj, ensure_ascii=False)


def truncate(obj: dict[str, Any], field: str, share: float = 0.35) -> dict[str, Any]:
    """The output cut off after `share` of its main text, mid-sentence, at a word."""
    key = MAIN_KEY[field]
    out = dict(obj)
    if isinstance(out[key], list):
        out[key] = out[key][:1]
        out[key][0] = _cut(out[key][0], 0.5)
    else:
        out[key] = _cut(out[key], share)
    if field == "exercise":
        out["solution"] = _cut(out["solution"], 0.2)
    return out


def _cut(text: str, share: float) -> str:
    stop = max(int(len(text) * share), 1)
    space = text.rfind(" ", 0, stop)
    return text[:space if space > 0 else stop].rstrip(" ,.;:")


def inject(obj: dict[str, Any], field: str, line: str) -> dict[str, Any]:
    key = MAIN_KEY[field]
    out = dict(obj)
    if isinstance(out[key], list):
        out[key] = [*out[key], line]
    else:
        out[key] = f"{out[key]} {line}"
    return out


def broken(field: str, obj: dict[str, Any], k: int) -> str:
    """Three kinds of wrong format: prose instead of JSON, the main key renamed, cut JSON."""
    kind = k % 3
    if kind == 0:
        body = " ".join(str(v) for v in obj.values() if isinstance(v, str))
        return f"## {field.replace('_', ' ').title()}\n\n{body}"
    if kind == 1:
        key = MAIN_KEY[field]
        renamed = {("text" if k2 == key else k2): v for k2, v in obj.items()}
        return wrapped(field, renamed)
    full = wrapped(field, obj)
    return full[: len(full) // 2]


def load_briefs(folder: str | Path) -> list[dict[str, Any]]:
    files = sorted(Path(folder, "briefs").glob("*.yaml"))
    return [yaml.safe_load(f.read_text(encoding="utf-8")) for f in files]


def realism_set(folder: str | Path) -> list[Example]:
    """Every labelled output of the realism set, derived as the folder's README says."""
    folder = Path(folder)
    specs = load_briefs(folder)
    generic = yaml.safe_load((folder / "generic.yaml").read_text(encoding="utf-8"))
    injections = yaml.safe_load((folder / "injections.yaml").read_text(encoding="utf-8"))
    out: list[Example] = []
    for i, spec in enumerate(specs):
        briefs = field_briefs(spec)
        for field in MAIN_KEY:
            for level, content in _levels(spec, specs, i, field, generic, injections):
                out.append(_example(spec, field, level, briefs[field], content, len(out)))
    return out


def _example(spec: dict[str, Any], field: str, level: str, brief: str, content: str,
             n: int) -> Example:
    item_id = ITEM_IDS.get(field, field)
    parsed = parse_output(OUTPUTS[field], content, [item_id])[item_id]
    text = gate_text(parsed.value, limit=None) if parsed.value is not None else ""
    return Example(id=f"{spec['id']}-{field}-{level}-{n}", source="realism", group=spec["id"],
                   field=field, level=level, label=LEVELS[level], language=spec["language"],
                   brief=brief, content=content, text=text,
                   schema_valid=parsed.value is not None)


def _check_text(spec: dict[str, Any], generic: dict[str, Any], field: str, level: str) -> str:
    lang = generic[spec["language"]]
    first = spec["briefs"]["section"]["objectives"][0]
    return lang["checks"][f"{field}_{level}"].format(
        topic=spec["topic"], sections=2, lessons=6, minimum=5, first_section=first)


def _levels(spec: dict[str, Any], specs: list[dict[str, Any]], i: int, field: str,
            generic: dict[str, Any], injections: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(level, completion) pairs of one brief and field."""
    lang = spec["language"]
    if field in CHECKS:
        good = item(field, _check_text(spec, generic, field, "good"))
        weak = item(field, _check_text(spec, generic, field, "weak"))
    else:
        good, weak = item(field, spec["good"][field]), item(field, spec["weak"][field])
    yield "good", wrapped(field, good)
    yield "weak", wrapped(field, weak)
    raw_generic = generic[lang][field]
    filled = (json.loads(json.dumps(raw_generic).replace("{topic}", spec["topic"]))
              if not isinstance(raw_generic, str) else raw_generic.format(topic=spec["topic"]))
    yield "generic", wrapped(field, item(field, filled))
    other = _off_brief(specs, i)
    if field in CHECKS:
        yield "off_brief", wrapped(field, item(field, _check_text(other, generic, field,
                                                                   "good")))
    else:
        yield "off_brief", wrapped(field, item(field, other["good"][field]))
    yield "truncated", wrapped(field, truncate(good, field))
    yield "wrong_format", broken(field, good, i)
    if field in spec.get("wrong_language", {}):
        yield "wrong_language", wrapped(field, item(field, spec["wrong_language"][field]))
    lines = injections["appended"]
    yield "injected", wrapped(field, inject(good, field, lines[(i + len(field)) % len(lines)]))
    if field in LONG_FIELDS:
        whole = injections["whole"][i % len(injections["whole"])]
        key = MAIN_KEY[field]
        yield "injected", wrapped(field, {**good, key: whole})


def _off_brief(specs: list[dict[str, Any]], i: int) -> dict[str, Any]:
    """Another brief's output: same language and another domain when there is one."""
    me = specs[i]
    order = specs[i + 1:] + specs[:i]
    same = [s for s in order if s["language"] == me["language"] and s["domain"] != me["domain"]]
    other = [s for s in order if s["domain"] != me["domain"]]
    return (same or other)[0]


# ---- RouteLLM's GSM8K answers ----------------------------------------------------------------

GSM8K_FILE = Path("routellm_evals") / "long.parquet"


def gsm8k_set(public_dir: str | Path, limit: int | None = None) -> list[Example]:
    """RouteLLM's recorded GSM8K answers of both models, labelled by their graded
    correctness (good 0.85 when correct, 0.45 when wrong); [] when the data is absent."""
    path = Path(public_dir) / GSM8K_FILE
    if not path.is_file():
        return []
    import pandas as pd

    frame = pd.read_parquet(path, columns=["source_dataset", "prompt_id", "prompt", "model",
                                           "response", "score", "contaminated"])
    frame = frame[(frame["source_dataset"] == "gsm8k") & ~frame["contaminated"]
                  & frame["score"].notna()]
    if limit is not None:
        keep = sorted(frame["prompt_id"].unique())[:limit]
        frame = frame[frame["prompt_id"].isin(keep)]
    out = []
    for row in frame.itertuples(index=False):
        correct = float(row.score) >= 1.0
        out.append(Example(
            id=f"gsm8k-{row.prompt_id}-{row.model}", source="gsm8k", group=str(row.prompt_id),
            field="gsm8k_answer", level="correct" if correct else "wrong",
            label=0.85 if correct else 0.45, language="en", brief=str(row.prompt),
            content=str(row.response), text=str(row.response), schema_valid=True))
    return out


# ---- your own labelled outputs -----------------------------------------------------------------


def own_examples(path: str | Path) -> list[Example]:
    """Labelled outputs of your own, one JSON object a line: `field`, `brief`, `content` (the
    completion text, or the item object), `label` (quality on the seed's scale) or `good`
    (true/false), and optionally `language`, `group` (what must stay on one side of the
    split, e.g. the course) and `level`."""
    out = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(x for x in lines if x.strip()):
        row = json.loads(line)
        field = row["field"]
        content = row["content"]
        if not isinstance(content, str):
            content = wrapped(field, content) if field in OUTPUTS else json.dumps(content)
        label = float(row["label"]) if "label" in row else (
            LEVELS["good"] if row["good"] else LEVELS["weak"])
        item_id = ITEM_IDS.get(field, field)
        parsed = (parse_output(OUTPUTS[field], content, [item_id])[item_id]
                  if field in OUTPUTS else None)
        valid = parsed is None or parsed.value is not None
        text = content if parsed is None else (gate_text(parsed.value, limit=None)
                                               if valid else "")
        out.append(Example(
            id=f"own-{n}", source="own", group=str(row.get("group", f"own-{n}")),
            field=field, level=str(row.get("level", "good" if label >= PASSING else "bad")),
            label=label, language=row.get("language"), brief=row["brief"], content=content,
            text=text, schema_valid=valid))
    return out
