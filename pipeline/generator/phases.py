"""Phases 4 and 5 as the seed has them: the section review acts, short sections grow.

- Phase 4 (quality validation): each section's quality_check reads the section's generated
  lessons and exercises (`Task.review`) and names the items that fall short. Those items
  are generated again, alone, starting one tier above the tier that wrote them (task
  `<course>-<field>-<k>-p4`, start source `override`, reason `phase4_review`); the course
  keeps the new version. One review round per section.
- Phase 5 (minimum lessons): the generated lessons are counted against `min_lessons`; when
  the course is short, the sections with the fewest lessons get new lessons (and one
  exercise each) until it is not (tasks `<course>-<field>-<k>-p5`), and the
  min_lessons_check is asked about the final count. The course summary says what happened.

A check's routing features count its review at the planned size (`Task.review_chars`,
from the section's planned items and the fields' expected output), not the generated text's,
so they are the same before and after phase 3 and the world model computes the same.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pipeline.generator.course import SUFFIXES, section_items
from pipeline.generator.plan import AnalysisResult, Brief
from pipeline.generator.schemas import gate_text
from pipeline.generator.tasks import Task, expected_tokens

REVIEWED = ("lesson_content", "exercise")


def attach_reviews(result: AnalysisResult, tasks: list[Task], done: dict[str, Any]) -> None:
    """Give each section's quality_check the section's generated content to judge."""
    cid = result.course_id
    for t in tasks:
        if t.field != "quality_check":
            continue
        k = int(t.task_id.rsplit("-", 1)[1])
        briefs = {i: b for src in tasks if src.field in REVIEWED
                  and src.task_id == f"{cid}-{src.field}-{k}" for i, b in src.items.items()}
        t.review = [{"id": i, "brief": briefs.get(i, ""), "text": gate_text(v, limit=None)}
                    for field in REVIEWED
                    for i, v in section_items(done, cid, field, k).items()]


def review_failures(result: AnalysisResult, done: dict[str, Any], k: int) -> list[str]:
    """The items section k's review failed."""
    check = done.get(f"{result.course_id}-quality_check-{k}")
    if check is None:
        return []
    return list(check.items.get(f"s{k}-check", {}).get("failing_items") or [])


def one_tier_up(tier: str, ladder: list[str]) -> str:
    """The next ladder tier (premium stays premium; an off-ladder tier stays)."""
    if tier not in ladder:
        return tier
    return ladder[min(ladder.index(tier) + 1, len(ladder) - 1)]


def regeneration_tasks(result: AnalysisResult, tasks: list[Task], done: dict[str, Any],
                       ladder: list[str], fields: Any) -> list[tuple[Task, str]]:
    """(task for the items a review failed, its start tier) per reviewed batch."""
    growth = 1.0 + 0.3 * float(result.analysis.complexity)
    out = []
    for t in tasks:
        if t.field not in REVIEWED or f"{t.task_id}-p4" in done or t.task_id not in done:
            continue
        k = int(t.task_id.rsplit("-", 1)[1])
        failed = [i for i in review_failures(result, done, k) if i in t.items]
        if failed:
            task = replace(t, task_id=f"{t.task_id}-p4", items={i: t.items[i] for i in failed},
                           review=[], expected_output_tokens=expected_tokens(
                               fields[t.field], len(failed), growth))
            out.append((task, one_tier_up(done[t.task_id].tier, ladder)))
    return out


def passing_lessons(done: dict[str, Any], cid: str, k: int, threshold: float
                    ) -> tuple[int, int]:
    """(lessons of section k that passed the gate, lessons it has), latest versions."""
    scores: dict[str, float] = {}
    for suffix in SUFFIXES:
        found = done.get(f"{cid}-lesson_content-{k}{suffix}")
        if found is not None:
            scores.update(found.item_similarity)
    return sum(s >= threshold for s in scores.values()), len(scores)


def plan_extension(counts: list[int], minimum: int) -> dict[int, int]:
    """Lessons to add per section: always to the section with the fewest, until the course
    has `minimum` lessons."""
    counts = list(counts)
    added: dict[int, int] = {}
    while sum(counts) < minimum:
        k = counts.index(min(counts))
        counts[k] += 1
        added[k] = added.get(k, 0) + 1
    return added


def extension_tasks(result: AnalysisResult, tasks: list[Task], sizes: list[int],
                    added: dict[int, int], fields: Any) -> list[Task]:
    """New lesson and exercise tasks (one exercise per lesson) for the extended sections;
    new lessons are numbered after the section's existing ones (`sizes`)."""
    cid = result.course_id
    growth = 1.0 + 0.3 * float(result.analysis.complexity)
    by_id = {t.task_id: t for t in tasks}
    out = []
    for k, n in sorted(added.items()):
        focus = result.sections[k].brief.objectives[0]
        lessons = {f"s{k}-l{sizes[k] + j}": Brief(
            objectives=[f"Deepen {focus} with a further lesson",
                        f"Give learners more practice with {focus}"],
            key_points=["A new worked example", "A short recap of the section"]).text()
            for j in range(n)}
        exercises = {f"{i}-e0": b for i, b in lessons.items()}
        for field, items in (("lesson_content", lessons), ("exercise", exercises)):
            base = by_id[f"{cid}-{field}-{k}"]
            out.append(replace(base, task_id=f"{base.task_id}-p5", items=items, review=[],
                               expected_output_tokens=expected_tokens(fields[field],
                                                                      len(items), growth)))
    return out


def recount(task: Task, result: AnalysisResult, final: int) -> None:
    """The min_lessons_check asks about the lessons that exist after phase 5."""
    key = next(iter(task.items))
    task.items[key] = (f"The course {result.topic} has {final} lessons in "
                       f"{len(result.sections)} sections; at least {result.min_lessons} "
                       "are required.")


async def review(gen: Any, result: AnalysisResult, tasks: list[Task], state: Any,
                 journal: Any) -> dict[str, Any]:
    """After the phase-4 checks: regenerate what they failed, one tier up."""
    jobs = regeneration_tasks(result, tasks, state.done, gen.catalog.ladder,
                              gen.catalog.fields)
    await gen.run_jobs(4, [(t, (tier, "phase4_review")) for t, tier in jobs], state,
                       journal, len(tasks))
    regenerated = {t.task_id: sorted(state.done[f"{t.task_id}-p4"].items) for t in tasks
                   if f"{t.task_id}-p4" in state.done}
    return {"sections_failed": sum(bool(review_failures(result, state.done, k))
                                   for k in range(len(result.sections))),
            "regenerated": regenerated}


async def extend(gen: Any, result: AnalysisResult, tasks: list[Task], state: Any,
                 journal: Any) -> dict[str, Any]:
    """Phase 5: count the lessons that passed, extend short sections, recount."""
    cid = result.course_id
    threshold = gen.verdicts.threshold("lesson_content")
    counted = [passing_lessons(state.done, cid, k, threshold)
               for k in range(len(result.sections))]
    done_before = {k: len(state.done[f"{cid}-lesson_content-{k}-p5"].items)
                   for k in range(len(result.sections))
                   if f"{cid}-lesson_content-{k}-p5" in state.done}
    added = plan_extension([c for c, _ in counted], result.min_lessons)
    jobs = extension_tasks(result, tasks, [n for _, n in counted], added, gen.catalog.fields)
    await gen.run_jobs(5, [(t, None) for t in jobs], state, journal, len(tasks))
    final = [passing_lessons(state.done, cid, k, threshold)[0]
             for k in range(len(result.sections))]
    check = next(t for t in tasks if t.field == "min_lessons_check")
    extended = {**{f"s{k}": n for k, n in done_before.items()},
                **{f"s{k}": n for k, n in added.items()}}
    if extended:
        recount(check, result, sum(final))
    return {"required": result.min_lessons, "planned": result.lesson_count,
            "passing_before": sum(c for c, _ in counted), "extended": extended,
            "final": sum(final)}


async def run_phases(gen: Any, result: AnalysisResult, tasks: list[Task], state: Any,
                     journal: Any) -> dict[str, Any]:
    """Every phase's tasks in order, with phase 4's review and phase 5's extension."""
    report: dict[str, Any] = {}
    for phase in sorted({t.phase for t in tasks}):
        if phase == 4:
            attach_reviews(result, tasks, state.done)
        if phase == 5:
            report["phase5"] = await extend(gen, result, tasks, state, journal)
        todo = [(t, None) for t in tasks if t.phase == phase and t.task_id not in state.done]
        await gen.run_jobs(phase, todo, state, journal, len(tasks))
        if phase == 4:
            report["phase4"] = await review(gen, result, tasks, state, journal)
    return report
