"""A finished course: its JSON (content and each field's provenance) and its summary.

Phase 4 may have regenerated some lessons and exercises (task `<field>-<k>-p4`) and phase 5
may have added lessons to short sections (`<field>-<k>-p5`); the course takes the latest
version of each item.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from pipeline.generator.plan import AnalysisResult
from pipeline.generator.tasks import Task

FieldResult = Any  # pipeline.generator.runner.FieldResult (the runner imports this module)

SUFFIXES = ("", "-p5", "-p4")  # later versions of an item win


def section_items(done: dict[str, FieldResult], cid: str, field: str, k: int
                  ) -> dict[str, dict[str, Any]]:
    """Every item of a section's batched field: planned, extended (phase 5), regenerated
    (phase 4), the later replacing the earlier."""
    items: dict[str, dict[str, Any]] = {}
    for suffix in SUFFIXES:
        found = done.get(f"{cid}-{field}-{k}{suffix}")
        if found is not None:
            items.update(found.items)
    return dict(sorted(items.items(), key=lambda kv: _item_order(kv[0])))


def _item_order(item_id: str) -> tuple[int, ...]:
    return tuple(int(p[1:]) for p in item_id.split("-") if p[1:].isdigit())


def assemble_course(result: AnalysisResult, tasks: list[Task], done: dict[str, FieldResult],
                    phases: dict[str, Any] | None = None) -> dict[str, Any]:
    """The course JSON: the content, each field's provenance, and the course summary."""
    cid = result.course_id

    def value(field_name: str, ordinal: int = 0) -> dict[str, Any]:
        return done[f"{cid}-{field_name}-{ordinal}"].items

    sections = []
    for k in range(len(result.sections)):
        lessons = section_items(done, cid, "lesson_content", k)
        exercises = section_items(done, cid, "exercise", k)
        sections.append({
            "title": value("section_title", k)[f"s{k}"].get("title"),
            "lessons": [{**lesson, "exercises": [e for eid, e in exercises.items()
                                                 if eid.startswith(f"{lid}-e")]}
                        for lid, lesson in lessons.items()],
            "quality_check": value("quality_check", k)[f"s{k}-check"]})
    course = {"title": value("course_title")["course_title"].get("title"),
              "description": value("course_description")["course_description"]
              .get("description"),
              "learning_outcomes": value("learning_outcomes")["learning_outcomes"]
              .get("outcomes"),
              "pedagogical_strategy": value("pedagogical_strategy")["pedagogical_strategy"]
              .get("strategy"),
              "sections": sections}
    fields = {tid: {k: v for k, v in asdict(r).items() if k != "items"}
              | {"similarity": round(r.similarity, 4)} for tid, r in done.items()}
    summary = course_summary(result, list(done.values()), phases or {})
    return {"course_id": cid, "topic": result.topic, "course": course, "fields": fields,
            "summary": summary}


def course_summary(result: AnalysisResult, fields: list[FieldResult],
                   phases: dict[str, Any]) -> dict[str, Any]:
    """Cost, calls, first-attempt and final pass (per field and for the course as the seed
    counts it), flags, latency, and what phases 4 and 5 did."""
    flagged = [f.task_id for f in fields if f.flagged]
    return {
        "fields": len(fields),
        "cost_usd": round(sum(f.cost_usd for f in fields), 6),
        "attempts": sum(f.attempts for f in fields),
        "calls": sum(f.calls for f in fields),
        "cache_hits": sum(f.cache_hits for f in fields),
        "first_attempt_pass": round(float(np.mean([f.first_attempt_passed for f in fields])),
                                    4),
        "final_pass": round(float(np.mean([f.passed for f in fields])), 4),
        # the seed's per-course terms: every field passed on its first attempt / none flagged
        "course_first_attempt_pass": all(f.first_attempt_passed for f in fields),
        "course_final_pass": not flagged,
        "mean_similarity": round(float(np.mean([f.similarity for f in fields])), 4),
        "flagged": flagged,
        "call_latency_s": round(sum(f.latency_ms for f in fields) / 1000.0, 2),  # summed
        "phase4": phases.get("phase4", {}),
        "phase5": phases.get("phase5", {}),
        "min_lessons_ok": phases.get("phase5", {}).get(
            "final", result.lesson_count) >= result.min_lessons,
        "router_versions": sorted({f.router_version for f in fields}),
        "gate_versions": sorted({v for f in fields for v in f.gate_versions}),
    }
