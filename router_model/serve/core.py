"""The routing service's core, without HTTP: decisions, escalation, reloads, shadow, logs.

`RouterService` is what both the FastAPI app (`service.py`) and the in-process client use, so
a generator gets the same answers whether it calls over HTTP or in the same process.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from router_model.config import Catalog, check, typed
from router_model.contract import TRANSIENT_ERRORS, Decision
from router_model.decide.gate import ACTION_NAMES, Action, Gate
from router_model.decide.policy import RoutingPolicy
from router_model.decide.routers import Router, RouterContext, build_router
from router_model.decide.settings import PolicySettings
from router_model.logs.decisions import DecisionLog
from router_model.model.artifact import LATEST_FILE, MANIFEST_FILE, load_artifact, probe
from router_model.model.compiled import compile_model
from router_model.model.features import flatten_task
from router_model.serve.catalog_guard import guard

log = logging.getLogger("stage5_router.serving")


class EscalationError(ValueError):
    """An escalate request that cannot be answered; names the field and the value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ServeSettings:
    """`serve` in config (conf/serve/default.yaml holds the defaults and what each setting
    means); built with `config.typed`."""

    artifact: str | None
    router: str
    shadow_artifact: str | None
    decision_log: str | None
    decision_log_max_bytes: int
    decision_log_backups: int
    decision_log_flush_s: float  # a crash loses at most this much of the log
    compiled_cache: str | None  # compile the trees, cached in its compiled/; None: off
    reload_poll_s: float
    admin_token_env: str
    max_batch: int
    max_body_bytes: int
    ready_when_degraded: bool
    host: str
    port: int
    workers: int
    log_level: str
    gauge_window: int
    replica: str | None  # this process's name: /metrics label, decision-log lines and
    #                      file name, /readyz; None: `<hostname>-<port>`

    def __post_init__(self) -> None:
        # Frozen, so the derived values are set once here and every reader sees the same.
        if self.replica is None:
            object.__setattr__(self, "replica", default_replica(self.port))
        check(isinstance(self.replica, str) and bool(REPLICA_NAME.fullmatch(self.replica)),
              "serve.replica", self.replica, "must be 1-64 letters, digits, '.', '_' or '-', "
              "starting with a letter or digit (it names a file and a metrics label)")
        if self.decision_log and REPLICA_SLOT in self.decision_log:
            object.__setattr__(self, "decision_log",
                               self.decision_log.replace(REPLICA_SLOT, str(self.replica)))
        check(self.max_batch >= 1, "serve.max_batch", self.max_batch, "must be >= 1")
        check(self.max_body_bytes >= 1024, "serve.max_body_bytes", self.max_body_bytes,
              "must be >= 1024")
        check(self.workers >= 1, "serve.workers", self.workers, "must be >= 1")
        check(self.gauge_window >= 1, "serve.gauge_window", self.gauge_window, "must be >= 1")
        check(0 < self.port < 65536, "serve.port", self.port, "must be in 1..65535")
        check(self.decision_log_flush_s > 0, "serve.decision_log_flush_s",
              self.decision_log_flush_s, "must be > 0 seconds")
        check(self.reload_poll_s >= 0, "serve.reload_poll_s", self.reload_poll_s,
              "must be >= 0 (0 disables automatic reloads)")


REPLICA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# In serve.decision_log, replaced by serve.replica: replicas sharing a data folder then write
# one file each (two processes appending to, and rotating, one file would corrupt it).
REPLICA_SLOT = "{replica}"


def default_replica(port: int) -> str:
    """`<hostname>-<port>`: distinct for two replicas on one host (ports differ) and for one
    port on several hosts; characters a file name or label should not hold become '-'."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip("-.") or "host"
    return f"{host[:56]}-{port}"


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])(?:/[^\s'\"/:,;()]+)+/?")


def redact_paths(text: str | None) -> str | None:
    """A message for clients: every absolute path shortened to its last part (`.../name`)."""
    if not text:
        return text
    return _ABSOLUTE_PATH.sub(lambda m: ".../" + m.group(0).rstrip("/").rsplit("/", 1)[-1],
                              text)


def _redacted(policy: RoutingPolicy) -> RoutingPolicy:
    policy.fallback_reason = redact_paths(policy.fallback_reason)
    return policy


def artifact_signature(path: str | None) -> tuple[Any, ...]:
    """What changes when a new artifact lands: LATEST's target and its manifest's mtime."""
    if not path:
        return ()
    root = Path(path)
    latest = root / LATEST_FILE
    try:
        target = latest.read_bytes().strip().decode("utf-8", "replace")
    except OSError:
        target = ""
    manifest = (root / target / MANIFEST_FILE) if target else root / MANIFEST_FILE
    try:
        return (target, manifest.stat().st_mtime_ns)
    except (OSError, ValueError):
        return (target, None)


class RouterService:
    """Routes tasks, answers gate results, swaps models safely, logs every decision."""

    def __init__(self, catalog: Catalog, policy_settings: PolicySettings,
                 settings: ServeSettings, seed: int | None = None,
                 registry: Mapping[str, Any] | None = None) -> None:
        self.catalog = catalog
        self.settings = settings
        self.policy_settings = policy_settings
        self.gate = Gate.from_catalog(catalog)
        self.registry = dict(registry or {})
        self.decision_log = DecisionLog(settings.decision_log, settings.decision_log_max_bytes,
                                        settings.decision_log_backups,
                                        settings.decision_log_flush_s,
                                        replica=settings.replica)
        self._seed = seed
        self._reload_lock = threading.Lock()
        self._tiers_by_decision: OrderedDict[str, str] = OrderedDict()
        self._tiers_lock = threading.Lock()
        policy = _redacted(RoutingPolicy.from_artifact_path(
            catalog, self.policy_settings, settings.artifact, seed, settings.compiled_cache))
        if settings.artifact and not policy.learned:
            log.warning("serving from the rules (degraded): %s", policy.fallback_reason)
        self.router = self._build_router(policy)
        shadow = (_redacted(RoutingPolicy.from_artifact_path(
            catalog, self.policy_settings, settings.shadow_artifact, seed,
            settings.compiled_cache))
            if settings.shadow_artifact else None)
        self.shadow_router = self._build_router(shadow) if shadow else None
        self.signature = artifact_signature(settings.artifact)
        self.reloads = {"ok": 0, "rejected": 0}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], seed: int | None = None) -> RouterService:
        """The service a composed `router_serve` config describes."""
        return cls(Catalog.from_config(cfg),
                   typed(PolicySettings, cfg["router"]["policy"], "router.policy"),
                   typed(ServeSettings, cfg["serve"], "serve"), seed=seed,
                   registry=cfg.get("routers"))

    def _build_router(self, policy: RoutingPolicy) -> Router:
        """The configured router from the registry, on `policy`; a router that needs a
        model the policy lacks leaves the learned router, which answers from the rules."""
        policy = guard(policy, self.catalog)  # catalog changes warned, unseen tiers: rules
        context = RouterContext(self.catalog, policy, seed=self._seed or 0)
        try:
            return build_router(self.settings.router, self.registry, context)
        except ValueError as exc:
            if policy.learned:
                raise
            log.warning("router %s cannot serve without a model (%s); serving the rules",
                        self.settings.router, exc)
            return build_router("learned", self.registry, context)

    @property
    def policy(self) -> RoutingPolicy:
        """The policy being served (the configured router's)."""
        return self.router.context.policy

    @property
    def shadow(self) -> RoutingPolicy | None:
        """The candidate scored beside it on every request, if any."""
        return self.shadow_router.context.policy if self.shadow_router else None

    # ---- decisions -------------------------------------------------------------------

    def route(self, task: Mapping[str, Any], explain: bool = False) -> dict[str, Any]:
        return self.route_batch([task], explain=explain, endpoint="route")[0]

    def route_batch(self, tasks: Sequence[Mapping[str, Any]], explain: bool = False,
                    endpoint: str = "route_batch") -> list[dict[str, Any]]:
        router = self.router  # one reference for the whole request: a reload cannot split it
        policy = router.context.policy
        decisions = self._decide(router, tasks)
        shadow_router = self.shadow_router
        shadows = (self._decide(shadow_router, tasks) if shadow_router
                   else [None] * len(tasks))
        out, logged = [], []
        for task, decision, shadow in zip(tasks, decisions, shadows, strict=True):
            record = decision.to_dict()
            self._remember(decision.decision_id, decision.start_tier, task.get("field"))
            logged.append((task, record, shadow.to_dict() if shadow else None))
            if explain:
                record = {**record, "explanation": self._explain(policy, task, decision)}
            out.append(record)
        self.decision_log.write_many(endpoint, logged)
        return out

    def _decide(self, router: Router, tasks: Sequence[Mapping[str, Any]]) -> list[Decision]:
        try:
            return router.decide(tasks)
        except Exception as exc:  # a bug must cost a learned decision, never the request
            log.exception("policy failed; answering from the rules")
            rules = RoutingPolicy(self.catalog, self.policy_settings,
                                  fallback_reason=f"internal_error: {type(exc).__name__}")
            return rules.decide_many(tasks)

    def _explain(self, policy: RoutingPolicy, task: Mapping[str, Any], decision: Decision
                 ) -> list[dict[str, Any]]:
        if not policy.learned or decision.start_tier not in policy.ladder:
            return []
        flat = {**flatten_task(task), "tier": decision.start_tier}
        model = policy.artifact.model
        return model.explain(model.spec.encode_records([flat]))

    def _remember(self, decision_id: str, tier: str, field: Any) -> None:
        """Where a decision's task stands now (tier, field), so /v1/escalate can omit them."""
        with self._tiers_lock:
            self._tiers_by_decision[decision_id] = (tier, field)
            self._tiers_by_decision.move_to_end(decision_id)
            while len(self._tiers_by_decision) > 100_000:
                self._tiers_by_decision.popitem(last=False)

    # ---- the ladder, one gate result at a time ----------------------------------------

    def escalate(self, *, schema_valid: bool, similarity: float | None = None,
                 tier: str | None = None, decision_id: str | None = None,
                 error_kind: str | None = None, retry_count: int = 0,
                 field: str | None = None) -> dict[str, Any]:
        """The next step after a gate result, by the seed's ladder and the field's threshold."""
        with self._tiers_lock:
            known_tier, known_field = self._tiers_by_decision.get(decision_id or "", (None, None))
        tier = tier or known_tier
        field = field or known_field
        if tier is None:
                raise EscalationError("tier", f"tier is missing and decision_id="
                                      f"{decision_id!r} is not a recent decision; send tier")
        names = self.catalog.tier_names
        if tier not in names:
            raise EscalationError("tier", f"tier={tier!r} is not a tier; expected one of {names}")
        if error_kind == "context_overflow":
            nxt, action, retry, reason = (self.catalog.gate.overflow_tier, "escalate", 0,
                                          "context_overflow")
        else:
            a, n, r, why = self.gate.next_step(
                np.array([names.index(tier)]), np.array([retry_count]),
                np.array([np.nan if similarity is None else similarity]),
                np.array([schema_valid and error_kind != "schema"]),
                np.array([error_kind in TRANSIENT_ERRORS]),
                threshold=self.gate.pass_thresholds([field] if field else None, 1))
            action, nxt = ACTION_NAMES[Action(int(a[0]))], names[int(n[0])]
            retry, reason = int(r[0]), why[0] or None
        if decision_id:
            self._remember(decision_id, nxt, field)
        target = self.catalog.tiers[nxt]
        return {"action": action, "next_tier": nxt, "model": target.model_id,
                "provider": target.provider, "retry_count": retry, "reason": reason,
                "decision_id": decision_id}

    # ---- model lifecycle ---------------------------------------------------------------

    def readiness(self) -> dict[str, Any]:
        """`status` is "degraded" while a configured artifact is not being served; whether
        that still counts as ready is `serve.ready_when_degraded`."""
        policy = self.policy
        degraded = bool(self.settings.artifact) and not policy.learned
        return {"ready": not degraded or self.settings.ready_when_degraded,
                "status": "degraded" if degraded else "ok",
                "replica": self.settings.replica,
                "mode": "learned" if policy.learned else "rules",
                "router": self.settings.router,
                "router_version": policy.router_version,
                "fallback_reason": policy.fallback_reason,
                "rule": policy.settings.rule, "lam": policy.settings.lam,
                "shadow": self.shadow.router_version if self.shadow else None}

    def reload(self) -> dict[str, Any]:
        """Load, probe, then swap. A bad artifact is rejected and the old model keeps serving."""
        path = self.settings.artifact
        with self._reload_lock:
            try:
                if not path:
                    raise FileNotFoundError("no artifact path is configured (serve.artifact)")
                artifact = load_artifact(path)
                compile_model(artifact.model, self.settings.compiled_cache)
                probe(artifact)
            except Exception as exc:
                self.reloads["rejected"] += 1
                log.warning("reload rejected: %s", exc)
                return {"reloaded": False, "error": redact_paths(str(exc)),
                        "router_version": self.policy.router_version}
            policy = RoutingPolicy(self.catalog, self.policy_settings, artifact,
                                   seed=self._seed)
            self.router = self._build_router(policy)
            self.signature = artifact_signature(path)
            self.reloads["ok"] += 1
            return {"reloaded": True, "router_version": self.policy.router_version}

    def reload_if_changed(self) -> dict[str, Any] | None:
        signature = artifact_signature(self.settings.artifact)
        if signature == self.signature:
            return None
        result = self.reload()
        self.signature = signature  # a rejected version is not retried until it changes
        return result

    def admin_token(self) -> str | None:
        return os.environ.get(self.settings.admin_token_env) or None

    def close(self) -> None:
        self.decision_log.close()
