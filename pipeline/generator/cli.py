"""`course-generate`: analysis_result JSON files -> finished courses, attempt logs, summary."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from pipeline.gate.verifier import Verifier
from pipeline.generator.cache import DiskCache
from pipeline.generator.gate import BatchingGate, Embedder
from pipeline.generator.inputs import InputError, load_analysis_result
from pipeline.generator.llm_client import LLMClient, provider_settings
from pipeline.generator.plan import AnalysisResult
from pipeline.generator.runner import (
    PHASES,
    CourseFailed,
    GenerateSettings,
    Generator,
)
from pipeline.generator.tasks import build_tasks
from pipeline.seed_terms import format_targets
from router_model.cli_errors import user_errors
from router_model.config import CONF_DIR, Catalog, typed
from router_model.files import text_key
from router_model.logs.attempts import validate_sources, write_log_dataset, write_quarantine
from router_model.serve.client import (
    HttpRouterClient,
    LocalRouterClient,
    RouterClient,
    RouterClientSettings,
)
from router_model.serve.core import RouterService

log = logging.getLogger("stage5_router.generate")


def load_inputs(paths: Sequence[str | Path]) -> list[AnalysisResult]:
    """Every analysis_result under `paths`, all validated before any LLM call."""
    files: list[Path] = []
    for item in paths:
        p = Path(item)
        files += sorted(p.glob("*.json")) if p.is_dir() else [p]
    if not files:
        raise InputError("no analysis_result given: pass JSON files or folders "
                         "(course-generate data/examples/typical.json)")
    results, problems = [], []
    for f in files:
        try:
            results.append(load_analysis_result(f))
        except InputError as exc:
            problems.append(str(exc))
    if problems:
        raise InputError(" | ".join(problems))
    ids = [r.course_id for r in results]
    if len(set(ids)) != len(ids):
        raise InputError(f"course_id must be unique across inputs; got {ids}")
    return results


def router_client(cfg: DictConfig, stack: ExitStack) -> RouterClient:
    """router-serve over HTTP when router.url is set (with the seed's rules in-process as
    its fallback when the service is unreachable), else the service in-process."""
    if cfg.router.get("url"):
        settings = typed(RouterClientSettings, cfg.router_client, "router_client")
        fallback = None
        if settings.fallback:
            rules = OmegaConf.create(OmegaConf.to_container(cfg))
            rules.serve.artifact = None  # the seed's rules: nothing to load, nothing to lose
            fallback = LocalRouterClient(RouterService.from_config(rules))
            stack.callback(fallback.service.close)
        client = HttpRouterClient(str(cfg.router.url), settings, fallback)
        stack.callback(client.close)
        return client
    service = RouterService.from_config(cfg)
    stack.callback(service.close)
    return LocalRouterClient(service)  # it warns if the catalog changed since training


def phase_bars(results: list[AnalysisResult], catalog: Catalog, enabled: bool,
               stack: ExitStack) -> Callable[[int], None]:
    """One progress bar per phase; returns the callback a finished task calls."""
    totals: dict[int, int] = {}
    for r in results:
        for t in build_tasks(r, catalog.fields):
            totals[t.phase] = totals.get(t.phase, 0) + 1
    bars = {p: stack.enter_context(tqdm(total=n, desc=f"phase {p} {PHASES[p]}", unit="field",
                                        position=i, disable=not enabled, leave=True))
            for i, (p, n) in enumerate(sorted(totals.items()))}
    return lambda phase: bars[phase].update(1)


async def _run_all(generator: Generator, results: list[AnalysisResult], in_flight: int,
                   fresh: bool) -> dict[str, Any]:
    limit = asyncio.Semaphore(in_flight)

    async def one(result: AnalysisResult) -> dict[str, Any]:
        async with limit:
            try:
                return (await generator.run_course(result, fresh=fresh))["summary"]
            except CourseFailed as exc:
                return {"error": str(exc)}

    summaries = await asyncio.gather(*(one(r) for r in results))
    await generator.llm.close()
    return dict(zip([r.course_id for r in results], summaries, strict=True))


def run(cfg: DictConfig, results: list[AnalysisResult] | None = None,
        embedder: Embedder | None = None) -> dict[str, Any]:
    """Generate every input course; write and return the run summary."""
    settings = typed(GenerateSettings, cfg.generate, "generate")
    provider = provider_settings(cfg.provider)
    catalog = Catalog.from_config(cfg)
    results = results if results is not None else load_inputs(settings.inputs)
    out = Path(settings.out_dir)
    with ExitStack() as stack:
        cache = DiskCache(provider.cache_path) if provider.cache else None
        if cache is not None:
            stack.callback(cache.close)
        if embedder is None:
            embedder = Embedder(settings.embedding_cache)
        progress = phase_bars(results, catalog, settings.progress, stack)
        llm = LLMClient(catalog, provider, cache)
        encoder = BatchingGate(embedder, settings.gate_batch_wait_s)
        verifier = Verifier(catalog.gate, encoder.encode, llm)
        generator = Generator(catalog, router_client(cfg, stack), llm, verifier, settings,
                              out, progress)
        courses = asyncio.run(_run_all(generator, results, settings.max_courses_in_flight,
                                       settings.fresh))
    summary = {"courses": courses, "total": totals(courses),
               "response_cache_hit_rate": cache.hit_rate() if cache else None,
               "provider_calls": llm.calls}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if settings.log_dataset:
        export_logs(out, [c for c, s in courses.items() if "error" not in s],
                    settings.log_dataset, settings.log_shards)
    return summary


def export_logs(out: Path, course_ids: list[str], root: str, shards: int) -> None:
    """Copy finished courses' journals into the hive-partitioned Parquet log dataset, one
    file per course named by its id's hash, so exporting a course again replaces it. Rows
    that break the contract go to `<out_dir>/export_quarantine.jsonl`, never into the set."""
    quarantined = []
    for cid in course_ids:
        loaded = validate_sources([out / "attempts" / f"{cid}.jsonl"],
                                  known_fields=None, known_tiers=None)
        quarantined += loaded.quarantined.to_dict("records")
        if len(loaded.frame):
            name = text_key(cid)[:16]
            write_log_dataset(loaded.frame, root, shards=shards, basename=name)
    if quarantined:
        write_quarantine(quarantined, out / "export_quarantine.jsonl")
        log.warning("%d journal rows were not exported (see %s)", len(quarantined),
                    out / "export_quarantine.jsonl")


def totals(courses: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Means over finished courses, how many failed, and the seed's per-course terms: the
    share of courses whose every field passed on its first attempt, and with none flagged."""
    ok = [c for c in courses.values() if "error" not in c]
    n = max(len(ok), 1)
    return {"courses": len(ok), "failed": len(courses) - len(ok),
            "cost_usd_per_course": round(sum(c["cost_usd"] for c in ok) / n, 6),
            "attempts_per_course": round(sum(c["attempts"] for c in ok) / n, 2),
            "course_first_attempt_pass": round(
                sum(c["course_first_attempt_pass"] for c in ok) / n, 4),
            "course_final_pass": round(sum(c["course_final_pass"] for c in ok) / n, 4),
            "first_attempt_pass": round(sum(c["first_attempt_pass"] for c in ok) / n, 4),
            "final_pass": round(sum(c["final_pass"] for c in ok) / n, 4),
            "mean_similarity": round(sum(c["mean_similarity"] for c in ok) / n, 4),
            "flagged_fields": sum(len(c["flagged"]) for c in ok),
            "courses_with_flags": sum(bool(c["flagged"]) for c in ok),
            "phase4_regenerated_items": sum(len(v) for c in ok for v in
                                            c.get("phase4", {}).get("regenerated", {}).values()),
            "phase5_extended_courses": sum(bool(c.get("phase5", {}).get("extended"))
                                           for c in ok),
            "cache_hits": sum(c["cache_hits"] for c in ok)}


def format_summary(summary: dict[str, Any], rules: dict[str, Any] | None = None) -> str:
    """The per-course table, the totals (the seed's per-course terms next to the per-field
    ones), the seed's targets met or missed, and the rule policy's totals when given."""
    lines = [f"{'course':<22}{'$/course':>10}{'attempts':>10}{'1st pass':>10}{'final':>8}"
             f"{'fields 1st':>12}{'flagged':>9}  phases"]
    for cid, c in summary["courses"].items():
        if "error" in c:
            lines.append(f"{cid:<22}FAILED: {c['error']}")
            continue
        lines.append(f"{cid:<22}{c['cost_usd']:>10.4f}{c['attempts']:>10}"
                     f"{'yes' if c['course_first_attempt_pass'] else 'no':>10}"
                     f"{'yes' if c['course_final_pass'] else 'no':>8}"
                     f"{c['first_attempt_pass']:>12.3f}{len(c['flagged']):>9}  "
                     f"{phase_note(c)}")
    rows = [("this run", summary["total"])] + ([("seed rules", rules["total"])] if rules else [])
    lines += ["", f"{'policy':<14}{'$/course':>10}{'courses 1st':>13}{'courses final':>15}"
                  f"{'fields 1st':>12}{'fields final':>14}{'flagged':>9}"]
    for name, t in rows:
        lines.append(f"{name:<14}{t['cost_usd_per_course']:>10.4f}"
                     f"{t['course_first_attempt_pass']:>13.3f}{t['course_final_pass']:>15.3f}"
                     f"{t['first_attempt_pass']:>12.3f}{t['final_pass']:>14.3f}"
                     f"{t['flagged_fields']:>9}")
    for name, t in rows:
        lines += ["", f"the seed's targets ({name}, {t['courses']} courses):",
                  *format_targets({"cost_per_course_usd": t["cost_usd_per_course"],
                                   "course_first_attempt_pass": t["course_first_attempt_pass"],
                                   "course_final_pass": t["course_final_pass"]})]
    for name, run_summary in (("this run", summary), ("seed rules", rules or {})):
        rate = run_summary.get("response_cache_hit_rate")
        if rate is not None:
            lines.append(f"response cache hit rate ({name}): {rate:.1%}")
    return "\n".join(lines)


def phase_note(course: dict[str, Any]) -> str:
    """What phases 4 and 5 did to a course, in a few words."""
    notes = []
    regenerated = course.get("phase4", {}).get("regenerated", {})
    if regenerated:
        notes.append(f"review regenerated {sum(len(v) for v in regenerated.values())} items")
    p5 = course.get("phase5", {})
    if p5.get("extended"):
        added = ", ".join(f"{k} +{n}" for k, n in p5["extended"].items())
        notes.append(f"extended to {p5['final']}/{p5['required']} lessons ({added})")
    elif p5 and p5.get("final", 0) < p5.get("required", 0):
        notes.append(f"short: {p5['final']}/{p5['required']} lessons")
    return "; ".join(notes) or "-"


def rules_config(cfg: DictConfig) -> DictConfig:
    """The same run with the seed's rule policy (no artifact, in-process), written beside."""
    rules_cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    rules_cfg.serve.artifact = None
    rules_cfg.router.url = None
    rules_cfg.generate.out_dir = f"{cfg.generate.out_dir}/seed_rules"
    rules_cfg.serve.decision_log = f"{rules_cfg.generate.out_dir}/decisions.jsonl"
    return rules_cfg


@hydra.main(config_path=CONF_DIR, config_name="course_generate", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    for noisy in ("httpx", "httpx2", "openai"):  # one INFO line per request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with user_errors("course-generate"):
        results = load_inputs(list(cfg.generate.inputs))
        summary = run(cfg, results)
        rules = None
        if cfg.generate.compare_with_rules:
            rules = run(rules_config(cfg), results)
    print(format_summary(summary, rules))
    if summary["total"]["failed"]:
        sys.exit(1)


HYDRA_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--info", "--config-name", "-cn",
                          "--config-path", "-cp", "--config-dir", "-cd"}


def main() -> None:
    """Positional arguments are inputs: `course-generate a.json b/` means generate.inputs."""
    rest, inputs = [], []
    for i, arg in enumerate(sys.argv[1:]):
        flag_value = i > 0 and sys.argv[i] in HYDRA_FLAGS_WITH_VALUE
        is_input = not flag_value and "=" not in arg and not arg.startswith("-")
        (inputs if is_input else rest).append(arg)
    if inputs:
        rest.append(f"generate.inputs=[{','.join(inputs)}]")
    sys.argv = [sys.argv[0], *rest]
    _main()
