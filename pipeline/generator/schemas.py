"""Output schemas (pydantic) for every Stage-5 field, and the parsing the gate relies on.

A batched field (a section's lessons or exercises) answers with an array of items, each
carrying the id it was asked for. Items are validated one by one, so a partly valid batch
keeps its good items and only the bad ones are asked for again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Text = Annotated[str, Field(min_length=1)]
# The gate reads this many characters of an item: about MiniLM's 256-token window, which
# would truncate anything longer anyway.
GATE_CHARS = 800


class Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TitleOut(Out):
    title: Annotated[str, Field(min_length=3, max_length=300)]


class DescriptionOut(Out):
    description: Annotated[str, Field(min_length=20)]


class OutcomesOut(Out):
    outcomes: Annotated[list[Text], Field(min_length=1)]


class StrategyOut(Out):
    strategy: Annotated[str, Field(min_length=20)]


class CheckOut(Out):
    verdict: Literal["pass", "fail"]
    notes: Annotated[str, Field(min_length=10)]


class SectionCheckOut(CheckOut):
    """Phase 4: the section review's verdict, and the reviewed items it would regenerate."""

    failing_items: list[str] = Field(default_factory=list)


class LessonOut(Out):
    id: Text
    title: Text
    content: Annotated[str, Field(min_length=20)]


class ExerciseOut(Out):
    id: Text
    prompt: Annotated[str, Field(min_length=10)]
    solution: Text


@dataclass(frozen=True)
class OutputSpec:
    """How a field answers: one object, or an array of items under `list_key`."""

    model: type[Out]
    list_key: str | None = None

    @property
    def batched(self) -> bool:
        return self.list_key is not None

    def json_schema(self) -> dict[str, Any]:
        """The schema sent as response_format (json_schema mode)."""
        item = self.model.model_json_schema()
        if not self.batched:
            return item
        return {"type": "object", "required": [self.list_key],
                "properties": {self.list_key: {"type": "array", "items": item}}}


OUTPUTS: dict[str, OutputSpec] = {
    "input_validation": OutputSpec(CheckOut),
    "course_title": OutputSpec(TitleOut),
    "course_description": OutputSpec(DescriptionOut),
    "learning_outcomes": OutputSpec(OutcomesOut),
    "pedagogical_strategy": OutputSpec(StrategyOut),
    "section_title": OutputSpec(TitleOut),
    "lesson_content": OutputSpec(LessonOut, "lessons"),
    "exercise": OutputSpec(ExerciseOut, "exercises"),
    "quality_check": OutputSpec(SectionCheckOut),
    "min_lessons_check": OutputSpec(CheckOut),
}


def gate_text(item: BaseModel | dict[str, Any], limit: int | None = GATE_CHARS) -> str:
    """The text the gate reads: every string value except ids, verdicts and the ids a review
    lists, in order (the first `limit` characters; None: all of it)."""
    data = item.model_dump() if isinstance(item, BaseModel) else item
    parts: list[str] = []
    for key, value in data.items():
        if key in ("id", "verdict", "failing_items"):
            continue
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts += [v for v in value if isinstance(v, str)]
    text = "\n".join(parts)
    return text if limit is None else text[:limit]


@dataclass
class ParsedItem:
    """One requested item: its validated output, or why it is missing or invalid."""

    value: dict[str, Any] | None
    error: str | None


def parse_output(spec: OutputSpec, content: str | None, item_ids: list[str]
                 ) -> dict[str, ParsedItem]:
    """Validate a completion against the field's schema, item by item."""
    try:
        data = json.loads(content or "")
    except json.JSONDecodeError as exc:
        return {i: ParsedItem(None, f"not JSON: {exc.msg}") for i in item_ids}
    if not spec.batched:
        return {item_ids[0]: _validate(spec.model, data)}
    items = data.get(spec.list_key) if isinstance(data, dict) else None
    if not isinstance(items, list):
        return {i: ParsedItem(None, f"no '{spec.list_key}' array") for i in item_ids}
    by_id = {x.get("id"): x for x in items if isinstance(x, dict)}
    return {i: _validate(spec.model, by_id[i]) if i in by_id
            else ParsedItem(None, f"item {i!r} missing") for i in item_ids}


def _validate(model: type[Out], data: Any) -> ParsedItem:
    try:
        return ParsedItem(model.model_validate(data).model_dump(), None)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "item"
        return ParsedItem(None, f"{where}: {first['msg']}")
