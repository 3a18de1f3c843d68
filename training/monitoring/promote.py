"""`router-promote`: champion / challenger. LATEST moves only to a candidate that is not worse.

The candidate and the serving artifact (the champion) route the same held-out courses, each
with its own calibrated dial. Where an outcome table exists the two are replayed exactly;
otherwise both are scored off-policy (cross-fitted doubly robust) on recent logs. Non-inferior
means, by one-sided bounds (`confidence`) of a paired bootstrap over courses: the candidate's
cost at the higher of the two served qualities (each frontier swept along lam and
interpolated, as router-evaluate's headline does) no more than `cost_margin` above the
champion's, and its quality at its own served dial (true pass where known, else gate pass)
no more than `quality_margin` below the champion's. The frontier is a comparison, not a
choice: the candidate serves its own calibrated dial. A candidate whose training asked for a
quality guarantee must have certified it. `--force` overrides the comparison (and is logged),
never the checks that keep a corrupt or foreign artifact from serving.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from router_model.config import Catalog, Paths, check
from router_model.decide.policy import RoutingPolicy
from router_model.decide.replay import cube_from_table, replay
from router_model.decide.settings import DIALS
from router_model.files import atomic_write_text
from router_model.logs.attempts import read_attempts
from router_model.logs.read_files import read_options
from router_model.model.artifact import (
    LATEST_FILE,
    ArtifactError,
    RouterArtifact,
    load_artifact,
    probe,
    resolve_version_dir,
)
from training.dataset import in_holdout
from training.evaluation.compare import Points, matched_comparison
from training.evaluation.off_policy import (
    crossfit_reward_model,
    dr_terms,
    explored_share,
    logged_bandit,
    with_overflow,
)
from training.evaluation.routing_metrics import percentile_interval, resample_counts
from training.monitoring.monitor import read_decisions
from training.router_settings import RouterSettings

PROMOTION_FILE = "promotion.json"
HISTORY_FILE = "promotions.jsonl"


@dataclass(frozen=True)
class PromoteSettings:
    """conf/promote (its comments say what each key does); the logs are paths.logs."""

    candidate: str | None
    force: bool
    initial_champion: str | None
    allow_first: bool
    min_exploration: float
    fail_on_refusal: bool
    report: str | None
    beside_candidate: bool
    tasks: str | None
    outcomes: str | None
    decision_log: str | None
    holdout_share: float
    cost_margin: float
    quality_margin: float
    confidence: float
    bootstrap: int
    seed: int

    def __post_init__(self) -> None:
        check(0 < self.holdout_share <= 1, "promote.holdout_share", self.holdout_share,
              "must be in (0, 1]")
        check(self.cost_margin >= 0, "promote.cost_margin", self.cost_margin, "must be >= 0")
        check(self.quality_margin >= 0, "promote.quality_margin", self.quality_margin,
              "must be >= 0")
        check(0.5 < self.confidence < 1, "promote.confidence", self.confidence,
              "must be in (0.5, 1)")
        check(self.bootstrap >= 10, "promote.bootstrap", self.bootstrap, "must be >= 10")

    @property
    def margins(self) -> dict[str, Any]:
        """What a promotion record states its verdict against."""
        return {k: getattr(self, k) for k in ("cost_margin", "quality_margin", "confidence",
                                              "bootstrap", "seed")}


@dataclass(frozen=True)
class PromoteJob:
    """Everything router-promote needs, typed once by its CLI."""

    catalog: Catalog
    paths: Paths
    router: RouterSettings
    promote: PromoteSettings


@dataclass
class Evidence:
    """Per artifact, per task of the held-out courses: cost and quality at its served dial
    (row 0) and along its lam sweep (the other rows)."""

    method: str
    course: np.ndarray
    cost: dict[str, np.ndarray]
    quality: dict[str, np.ndarray]
    quality_name: str
    # Compare costs at matched quality along the frontiers; off for gate pass from logs,
    # which sits near 1 for every dial, so the served costs are compared instead.
    frontier: bool = True
    shadow_decisions: int = 0  # the candidate's logged shadow choices used as its starts


class PromotionError(ValueError):
    """The promotion cannot be judged as asked (no exploration, no champion, a bad setting)."""


def load_candidate(path: str | Path) -> RouterArtifact:
    """A candidate version folder (or a root whose LATEST names one) that loads and probes,
    is named after its own version and carries the drift reference router-monitor needs; any
    other raises `ArtifactError`, whatever --force says."""
    artifact = load_artifact(path)
    probe(artifact)
    if artifact.path.name != artifact.router_version:
        raise ArtifactError(f"{artifact.path} holds version {artifact.router_version[:80]!r}; "
                            "a version folder must be named after its version (copy it "
                            "back under its own name)")
    if not isinstance(artifact.manifest.get("config"), dict) or \
            "reference" not in artifact.manifest:
        raise ArtifactError(f"{artifact.path}: its manifest lacks the training config or the "
                            "drift reference (trained before router-monitor existed, or "
                            "edited); retrain it with router-train")
    return artifact


def install(artifact: RouterArtifact, root: Path) -> RouterArtifact:
    """The artifact as a version folder directly inside `root` (copied there atomically and
    loaded back from the copy when it lives elsewhere), so LATEST can name it."""
    target = root / artifact.path.name
    if artifact.path.resolve().parent == root.resolve():
        return artifact
    root.mkdir(parents=True, exist_ok=True)
    if target.exists():  # the same name must hold the very same model files
        if load_artifact(target).manifest.get("files") != artifact.manifest.get("files"):
            raise ArtifactError(f"{target} already holds other model files under the "
                                "candidate's name; refusing to promote over it")
    else:
        tmp = root / f".tmp-{uuid.uuid4().hex}"
        try:
            shutil.copytree(artifact.path, tmp, ignore=shutil.ignore_patterns(
                PROMOTION_FILE))
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return load_candidate(target)


def serving_champion(root: Path, initial: str | None) -> RouterArtifact | None:
    """What LATEST serves; an empty root is first seeded with `initial`, when given."""
    if not (root / LATEST_FILE).exists():
        if not initial:
            return None
        seeded = install(load_candidate(initial), root)
        atomic_write_text(root / LATEST_FILE, seeded.path.name)
    return load_artifact(resolve_version_dir(root))


def sweep_starts(policy: RoutingPolicy, tasks: pd.DataFrame) -> np.ndarray:
    """(1 + grid, n) start tiers: the served dial first, then each lam of the dial's one
    grid (`settings.DIALS`; one prediction and one plan, re-chosen per lam)."""
    plan = policy.start_tiers(tasks)
    _, grid = DIALS["expected_loss"]
    rows = [plan["start"]]
    rows += [policy.choice.with_settings(lam=float(lam)).starts_for(plan) for lam in grid]
    return np.vstack(rows)


def replay_evidence(job: PromoteJob, policies: dict[str, RoutingPolicy]) -> Evidence:
    """Exact replay of both on the held-out courses of an outcome table."""
    catalog, settings = job.catalog, job.promote
    tasks = pd.read_parquet(settings.tasks)
    keep = in_holdout(tasks["course_id"], settings.holdout_share)
    tasks = tasks[keep].reset_index(drop=True)
    outcomes = pd.read_parquet(settings.outcomes)
    cube = cube_from_table(tasks, outcomes[outcomes["task_id"].isin(tasks["task_id"])],
                           catalog)
    cost, quality = {}, {}
    for name, policy in policies.items():
        runs = [replay(cube, start, catalog)
                for start in sweep_starts(policy, tasks)]
        cost[name] = np.vstack([r.cost for r in runs])
        quality[name] = np.vstack([r.true_pass for r in runs]).astype(float)
    return Evidence("exact replay", tasks["course_id"].to_numpy(), cost, quality, "true pass")


def shadow_starts(job: PromoteJob, bandit: pd.DataFrame, version: str) -> np.ndarray:
    """Per task, the start the candidate chose while it ran in shadow mode (from the
    decision log, matched by decision id and router version); -1 where it did not."""
    decisions, _ = read_decisions(job.promote.decision_log)
    mine = decisions[decisions["shadow_version"] == version].set_index("decision_id")
    tier = bandit["decision_id"].astype(str).map(mine["shadow_tier"])
    index = tier.map({t: i for i, t in enumerate(job.catalog.tier_names)})
    return index.fillna(-1).to_numpy(np.int64)


def logged_evidence(job: PromoteJob, policies: dict[str, RoutingPolicy]) -> Evidence:
    """Cross-fitted doubly robust terms of both on the held-out courses of recent logs."""
    catalog, settings = job.catalog, job.promote
    attempts = read_attempts(job.paths.logs, known_fields=catalog.fields,
                             known_tiers=catalog.tier_names,
                             **read_options(job.paths.log_reading)).frame
    attempts = attempts[in_holdout(attempts["course_id"], settings.holdout_share)]
    bandit = logged_bandit(attempts, catalog)
    explored = explored_share(bandit)
    if explored < settings.min_exploration:
        raise PromotionError(
            f"only {explored:.1%} of the held-out logged tasks explored (< promote."
            f"min_exploration={settings.min_exploration}): off-policy estimates of the "
            "candidate would be extrapolation. Serve with router.policy.epsilon > 0, or "
            "compare by exact replay (promote.tasks + promote.outcomes)")
    q = crossfit_reward_model(bandit, len(catalog.tier_names), ("cost", "passed"),
                              seed=settings.seed)
    shadow = shadow_starts(job, bandit, policies["candidate"].router_version)
    cost, quality = {}, {}
    for name, policy in policies.items():
        rows = sweep_starts(policy, bandit)
        if name == "candidate":  # where it ran in shadow, what it chose on live traffic
            rows[0] = np.where(shadow >= 0, shadow, rows[0])
        starts = [with_overflow(bandit, catalog, s) for s in rows]
        cost[name] = np.vstack([dr_terms(bandit, t, q["cost"], "cost") for t in starts])
        quality[name] = np.vstack([dr_terms(bandit, t, q["passed"], "passed") for t in starts])
    return Evidence("off-policy (cross-fitted DR)", bandit["course_id"].to_numpy(), cost,
                    quality, "gate pass", frontier=False,
                    shadow_decisions=int((shadow >= 0).sum()))


def paired_bounds(evidence: Evidence, settings: PromoteSettings) -> dict[str, Any]:
    """The candidate's cost against the champion's at the higher of their served qualities
    (both frontiers interpolated, as in router-evaluate's headline), and the quality change
    at the served dials, with one-sided bounds of a paired bootstrap over courses."""
    _, idx = np.unique(evidence.course, return_inverse=True)
    n_courses = int(idx.max()) + 1

    def per_course(rows: np.ndarray) -> np.ndarray:
        return np.vstack([np.bincount(idx, weights=r, minlength=n_courses) for r in rows])

    tasks = np.bincount(idx, minlength=n_courses).astype(float)
    points = {n: Points(per_course(evidence.cost[n]), per_course(evidence.quality[n]))
              for n in evidence.cost}
    served = {n: Points(p.cost[:1], p.passed[:1]) for n, p in points.items()}
    w = resample_counts(n_courses, settings.bootstrap, settings.seed).astype(float)
    level = 2 * settings.confidence - 1  # a two-sided interval whose ends are one-sided bounds
    if evidence.frontier:
        # At the higher of the two served qualities: a candidate that buys quality is
        # judged on what that quality would have cost the champion, and vice versa.
        higher = max(served, key=lambda n: served[n].passed.sum())
        matched = matched_comparison(points["candidate"], points["champion"], served[higher],
                                     tasks, n_boot=settings.bootstrap, seed=settings.seed,
                                     level=level)
        change, upper = -matched["saving"]["value"], -matched["saving"]["ci_low"]
        at_quality = matched["target_true_pass"]
    else:
        def ratio(c: np.ndarray) -> np.ndarray:
            return (c @ served["candidate"].cost[0]) / (c @ served["champion"].cost[0]) - 1.0

        change = float(ratio(np.ones((1, n_courses)))[0])
        upper, at_quality = percentile_interval(ratio(w), level)[1], None

    def diff(c: np.ndarray) -> np.ndarray:
        return (c @ served["candidate"].passed[0] - c @ served["champion"].passed[0]) / (c @ tasks)

    def cost(name: str) -> float:
        return float(served[name].cost.sum() / n_courses)

    return {
        "courses": n_courses, "tasks": int(idx.size), "method": evidence.method,
        "shadow_decisions": evidence.shadow_decisions,
        "quality_measure": evidence.quality_name,
        "champion_cost_per_course": cost("champion"),
        "candidate_cost_per_course": cost("candidate"),
        "champion_quality": float(served["champion"].passed.sum() / tasks.sum()),
        "candidate_quality": float(served["candidate"].passed.sum() / tasks.sum()),
        "matched_quality": at_quality, "cost_change": change, "cost_change_upper": upper,
        "quality_change": float(diff(np.ones((1, n_courses)))[0]),
        "quality_change_lower": percentile_interval(diff(w), level)[0],
    }


def guarantee_holds(candidate: RouterArtifact) -> tuple[bool, str]:
    """A candidate trained with router.guarantee must have certified it."""
    router = candidate.manifest["config"].get("router")
    asked = (router.get("guarantee") if isinstance(router, dict) else None) or {}
    if not isinstance(asked, dict) or asked.get("first_pass_min") is None:
        return True, "no guarantee requested"
    try:
        result = json.loads((candidate.path / "metrics.json").read_text()).get("guarantee")
    except (OSError, ValueError, AttributeError):
        result = None
    if isinstance(result, dict) and result.get("certified"):
        return True, f"certified first-attempt pass >= {asked['first_pass_min']}"
    return False, (f"its quality guarantee (first-attempt pass >= {asked['first_pass_min']}, "
                   f"delta {asked.get('delta')}) was not certified on its held-out courses")


def verdict(comparison: dict[str, Any], settings: PromoteSettings,
            guarantee: tuple[bool, str]) -> list[str]:
    """The reasons to refuse (empty: non-inferior)."""
    reasons = []
    if not comparison["cost_change_upper"] <= settings.cost_margin:
        where = (f"at {comparison['quality_measure']} {comparison['matched_quality']:.4f}"
                 if comparison["matched_quality"] is not None else "at the served dials")
        reasons.append(f"cost {where}: up to "
                       f"{comparison['cost_change_upper']:+.2%} ({settings.confidence:.0%} "
                       "bound), above "
                       f"promote.cost_margin={settings.cost_margin:.2%}")
    if not comparison["quality_change_lower"] >= -settings.quality_margin:
        reasons.append(f"{comparison['quality_measure']} at the served dial: down to "
                       f"{comparison['quality_change_lower']:+.4f} ({settings.confidence:.0%} "
                       "bound), below "
                       f"-promote.quality_margin={settings.quality_margin}")
    if not guarantee[0]:
        reasons.append(guarantee[1])
    return reasons


def compare(job: PromoteJob, champion: RouterArtifact, candidate: RouterArtifact
            ) -> dict[str, Any]:
    settings = job.promote
    policies = {"champion": RoutingPolicy(job.catalog, job.router.policy, champion),
                "candidate": RoutingPolicy(job.catalog, job.router.policy, candidate)}
    exact = settings.tasks and settings.outcomes
    evidence = (replay_evidence if exact else logged_evidence)(job, policies)
    comparison = paired_bounds(evidence, settings)
    guarantee = guarantee_holds(candidate)
    reasons = verdict(comparison, settings, guarantee)
    return {"champion": champion.router_version, "candidate": candidate.router_version,
            **comparison, "guarantee": guarantee[1], "margins": settings.margins,
            "non_inferior": not reasons, "reasons": reasons}


def record(root: Path, candidate: RouterArtifact, result: dict[str, Any],
           beside_candidate: bool) -> None:
    """The comparison beside the candidate (unless told not to write into its folder), and
    one line in the root's promotion history."""
    if beside_candidate:
        atomic_write_text(candidate.path / PROMOTION_FILE, json.dumps(result, indent=2))
    root.mkdir(parents=True, exist_ok=True)
    with (root / HISTORY_FILE).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(result) + "\n")


def run_promote(job: PromoteJob, candidate_path: str) -> dict[str, Any]:
    """Compare, decide, record; move LATEST only on an accepted (or forced) promotion."""
    settings, force = job.promote, job.promote.force
    root = Path(job.router.artifact)
    candidate = load_candidate(candidate_path)
    result: dict[str, Any] = {"time": datetime.now(UTC).isoformat(), "forced": force}
    champion = serving_champion(root, settings.initial_champion)
    if champion is None and not settings.allow_first:
        raise PromotionError(f"nothing is serving at router.artifact={root} (no {LATEST_FILE}): "
                             "check the path, or seed it with promote.initial_champion=<artifact>"
                             ", or set promote.allow_first=true to serve the candidate as is")
    if champion is None:
        result.update(candidate=candidate.router_version, champion=None, non_inferior=True,
                      reasons=[], note="no artifact was serving: the candidate is the first")
    elif champion.router_version == candidate.router_version:
        result.update(candidate=candidate.router_version, champion=champion.router_version,
                      non_inferior=False, reasons=["the candidate is already serving"])
    else:
        result.update(compare(job, champion, candidate))
    result["promoted"] = bool(result["non_inferior"] or (force and result["reasons"] != [
        "the candidate is already serving"]))
    if result["promoted"]:
        candidate = install(candidate, root)
        atomic_write_text(root / LATEST_FILE, candidate.path.name)
    record(root, candidate, result, settings.beside_candidate)
    return result
