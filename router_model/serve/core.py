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
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from router_model.config import Catalog, check, typed
from router_model.contract import EXAMPLE_TASK, TRANSIENT_ERRORS, Decision
from router_model.decide.gate import ACTION_NAMES, Action, Gate, gate_version
from router_model.decide.policy import RoutingPolicy
from router_model.decide.routers import Router, RouterContext, build_router
from router_model.decide.settings import PolicySettings
from router_model.logs.decisions import DecisionLog
from router_model.model.artifact import (
    MANIFEST_FILE,
    ArtifactError,
    load_artifact,
    probe,
    read_latest,
)
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
    compile_timeout_s: float  # a compile that takes longer is killed; LightGBM serves
    compile_memory_mb: int  # the compiling child process's address-space limit
    compile_wait_s: float  # at start-up, wait this long for compiled trees before serving
    reload_poll_s: float
    admin_token_env: str
    max_batch: int
    max_body_bytes: int
    max_task_body_bytes: int  # /v1/route and /v1/escalate: one task, far smaller
    max_json_items: int  # values and keys in one body, counted before it is parsed
    header_timeout_s: float  # a request's headers must arrive within this
    body_timeout_s: float  # and its body within this, once the headers are in
    keepalive_timeout_s: float  # an idle keep-alive connection is closed after this
    max_header_bytes: int  # larger request headers get a 431
    max_connections: int  # more open connections are answered 503 and closed
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
        check(self.max_task_body_bytes >= 1024, "serve.max_task_body_bytes",
              self.max_task_body_bytes, "must be >= 1024 (the smaller of it and "
              "serve.max_body_bytes applies)")
        check(self.max_json_items >= 100, "serve.max_json_items", self.max_json_items,
              "must be >= 100")
        for key in ("header_timeout_s", "body_timeout_s", "keepalive_timeout_s"):
            check(getattr(self, key) > 0, f"serve.{key}", getattr(self, key),
                  "must be > 0 seconds")
        check(self.max_header_bytes >= 1024, "serve.max_header_bytes", self.max_header_bytes,
              "must be >= 1024")
        check(self.max_connections >= 1, "serve.max_connections", self.max_connections,
              "must be >= 1")
        check(self.workers >= 1, "serve.workers", self.workers, "must be >= 1")
        check(self.gauge_window >= 1, "serve.gauge_window", self.gauge_window, "must be >= 1")
        check(0 < self.port < 65536, "serve.port", self.port, "must be in 1..65535")
        check(self.decision_log_flush_s > 0, "serve.decision_log_flush_s",
              self.decision_log_flush_s, "must be > 0 seconds")
        check(self.reload_poll_s >= 0, "serve.reload_poll_s", self.reload_poll_s,
              "must be >= 0 (0 disables automatic reloads)")
        check(self.compile_timeout_s > 0, "serve.compile_timeout_s", self.compile_timeout_s,
              "must be > 0 seconds")
        check(self.compile_memory_mb >= 256, "serve.compile_memory_mb",
              self.compile_memory_mb, "must be >= 256")
        check(self.compile_wait_s >= 0, "serve.compile_wait_s", self.compile_wait_s,
              "must be >= 0 seconds")


REPLICA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# In serve.decision_log, replaced by serve.replica: replicas sharing a data folder then write
# one file each (two processes appending to, and rotating, one file would corrupt it).
REPLICA_SLOT = "{replica}"


def default_replica(port: int) -> str:
    """`<hostname>-<port>`: distinct for two replicas on one host (ports differ) and for one
    port on several hosts; characters a file name or label should not hold become '-'."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip("-.") or "host"
    return f"{host[:56]}-{port}"


MAX_REMEMBERED = 100_000  # decisions /v1/escalate can look up by id alone

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
    """What changes when a new artifact lands: LATEST's target and its manifest's mtime.
    Never blocks and never raises (a LATEST that is a FIFO, unreadable or too big is a
    signature of its own, and the reload it triggers says what is wrong)."""
    if not path:
        return ()
    root = Path(path)
    try:
        target = read_latest(root) or ""
    except Exception as exc:  # ArtifactError, or anything else a crafted root provokes
        return ("unreadable", str(exc)[:200])
    manifest = (root / target / MANIFEST_FILE) if target else root / MANIFEST_FILE
    try:
        return (target, manifest.stat().st_mtime_ns)
    except (OSError, ValueError):
        return (target, None)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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
        self._reload_lock = threading.RLock()
        self._tiers_by_decision: OrderedDict[str, tuple[str, Any]] = OrderedDict()
        self._tiers_lock = threading.Lock()
        self.reloads = {"ok": 0, "rejected": 0}
        self.last_reload: dict[str, Any] | None = None
        self.trees = "none"  # the served model's trees: compiled, compiling, lightgbm, none
        self._policy_failing = False  # the last decision's learned policy raised
        # Start-up never fails on an artifact: whatever the folder holds, the service
        # starts, from the rules (degraded, and saying why) if it must.
        self.signature = artifact_signature(settings.artifact)
        self.router = self._router_or_rules(settings.artifact, "serve.artifact")
        if settings.artifact and not self.policy.learned:
            log.warning("serving from the rules (degraded): %s", self.policy.fallback_reason)
        self.shadow_router = (self._router_or_rules(settings.shadow_artifact,
                                                    "serve.shadow_artifact")
                              if settings.shadow_artifact else None)
        if self.shadow_router is not None and not self.shadow_router.context.policy.learned:
            log.warning("no shadow scoring: %s", self.shadow.fallback_reason)
            self.shadow_router = None
        waits = [self._compile_later("router", 0.0)]
        if self.shadow_router is not None:
            waits.append(self._compile_later("shadow_router", 0.0))
        deadline = time.monotonic() + settings.compile_wait_s
        for done in waits:  # bounded: past the wait, LightGBM serves until the trees are ready
            if done is not None:
                done.wait(max(0.0, deadline - time.monotonic()))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], seed: int | None = None) -> RouterService:
        """The service a composed `router_serve` config describes."""
        return cls(Catalog.from_config(cfg),
                   typed(PolicySettings, cfg["router"]["policy"], "router.policy"),
                   typed(ServeSettings, cfg["serve"], "serve"), seed=seed,
                   registry=cfg.get("routers"))

    def _load_policy(self, path: str) -> RoutingPolicy:
        """The learned policy on the artifact at `path`, checked end to end: loaded (files,
        sizes, schema, hashes, tree structure: `load_artifact`), probed, and one example
        decision made. Raises on anything wrong; compiles nothing (`_compile_later` does)."""
        artifact = load_artifact(path)
        probe(artifact)
        policy = RoutingPolicy(self.catalog, self.policy_settings, artifact, seed=self._seed)
        decision = policy.decide(EXAMPLE_TASK)
        if decision.source not in ("learned", "exploration") or not all(
                0.0 <= p <= 1.0 for p in decision.pass_probabilities.values()):
            raise ArtifactError(f"{artifact.path}: the model loads but does not decide "
                                f"({decision.fallback_reason or 'no probabilities'})")
        policy.rng = np.random.default_rng(self._seed)  # the probe decision drew nothing real
        return policy

    def _router_or_rules(self, path: str | None, key: str) -> Router:
        """The configured router on the artifact at `path`; on any failure the rules, with
        the reason (paths redacted), so a bad artifact never stops the service."""
        if not path:
            return self._build_router(RoutingPolicy(self.catalog, self.policy_settings, None,
                                                    "no_model", self._seed))
        try:
            return self._build_router(self._load_policy(path))
        except Exception as exc:
            reason = str(exc) if isinstance(exc, ArtifactError) else \
                f"{key}: {type(exc).__name__}: {exc}"
            rules = RoutingPolicy(self.catalog, self.policy_settings, None,
                                  f"artifact_error: {reason[:500]}", self._seed)
            return self._build_router(_redacted(rules))

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
            decisions = router.decide(tasks)
        except Exception as exc:  # a bug must cost a learned decision, never the request
            if router is self.router:
                self._policy_failing = True  # /readyz and router_degraded say so
            log.exception("policy failed; answering from the rules")
            rules = RoutingPolicy(self.catalog, self.policy_settings,
                                  fallback_reason=f"internal_error: {type(exc).__name__}")
            return rules.decide_many(tasks)
        if self._policy_failing and router is self.router:
            self._policy_failing = False
        return decisions

    def _explain(self, policy: RoutingPolicy, task: Mapping[str, Any], decision: Decision
                 ) -> list[dict[str, Any]]:
        if not policy.learned or decision.start_tier not in policy.ladder:
            return []
        flat = {**flatten_task(task), "tier": decision.start_tier}
        model = policy.artifact.model
        return model.explain(model.spec.encode_records([flat]))

    def _remember(self, decision_id: str, tier: str, field: Any) -> None:
        """Where a decision's task stands now (tier, field), so /v1/escalate can omit them.
        Only decisions this service issued are remembered (the newest 100,000)."""
        with self._tiers_lock:
            self._tiers_by_decision[decision_id] = (tier, field)
            self._tiers_by_decision.move_to_end(decision_id)
            while len(self._tiers_by_decision) > MAX_REMEMBERED:
                self._tiers_by_decision.popitem(last=False)

    def _advance(self, decision_id: str, tier: str, field: Any) -> None:
        """Move a decision this service issued to its next tier; an id it never issued
        changes nothing (a flood of made-up ids cannot push real decisions out)."""
        with self._tiers_lock:
            if decision_id in self._tiers_by_decision:
                self._tiers_by_decision[decision_id] = (tier, field)
                self._tiers_by_decision.move_to_end(decision_id)

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
            self._advance(decision_id, nxt, field)
        target = self.catalog.tiers[nxt]
        return {"action": action, "next_tier": nxt, "model": target.model_id,
                "provider": target.provider, "retry_count": retry, "reason": reason,
                "decision_id": decision_id}

    # ---- model lifecycle ---------------------------------------------------------------

    def degraded(self) -> bool:
        """True while the rules answer in place of a configured model: it did not load, or
        the loaded policy failed on its last decision."""
        return bool(self.settings.artifact) and (not self.policy.learned
                                                  or self._policy_failing)

    def readiness(self) -> dict[str, Any]:
        """`status` is "degraded" while the rules answer in place of a configured model;
        whether that still counts as ready is `serve.ready_when_degraded`. `last_reload`
        says how the newest reload went (a rejected one leaves the old model serving)."""
        policy = self.policy
        degraded = self.degraded()
        reason = policy.fallback_reason or (
            "internal_error: the model failed on the last decision" if degraded else None)
        return {"ready": not degraded or self.settings.ready_when_degraded,
                "status": "degraded" if degraded else "ok",
                "replica": self.settings.replica,
                "mode": "learned" if policy.learned else "rules",
                "router": self.settings.router,
                "router_version": policy.router_version,
                "gate_version": gate_version(self.catalog.gate),
                "fallback_reason": reason,
                "rule": policy.settings.rule, "lam": policy.settings.lam,
                "trees": self.trees,
                "last_reload": self.last_reload,
                "shadow": self.shadow.router_version if self.shadow else None}

    def reload(self) -> dict[str, Any]:
        """Load, check, probe, then swap. A bad artifact (whatever is wrong with it) is
        rejected with the reason and the old model keeps serving. The new model serves
        through LightGBM at once; its compiled trees replace that when they are ready."""
        path = self.settings.artifact
        started = time.perf_counter()
        with self._reload_lock:
            try:
                if not path:
                    raise ArtifactError("no artifact path is configured (serve.artifact)")
                router = self._build_router(self._load_policy(path))
            except Exception as exc:
                self.reloads["rejected"] += 1
                error = redact_paths(str(exc) if isinstance(exc, ArtifactError)
                                     else f"{type(exc).__name__}: {exc}")
                log.warning("reload rejected, the old model keeps serving: %s", exc)
                self.last_reload = {"ok": False, "at": now_iso(), "error": error}
                return {"reloaded": False, "error": error,
                        "router_version": self.policy.router_version}
            self.router = router
            self._policy_failing = False
            self.signature = artifact_signature(path)
            self.reloads["ok"] += 1
            seconds = round(time.perf_counter() - started, 3)
            self.last_reload = {"ok": True, "at": now_iso(),
                                "router_version": self.policy.router_version,
                                "seconds": seconds}
            self._compile_later("router", 0.0)
            return {"reloaded": True, "router_version": self.policy.router_version,
                    "seconds": seconds}

    def reload_if_changed(self) -> dict[str, Any] | None:
        signature = artifact_signature(self.settings.artifact)
        if signature == self.signature:
            return None
        result = self.reload()
        self.signature = signature  # a rejected version is not retried until it changes
        return result

    def _compile_later(self, slot: str, wait_s: float) -> threading.Event | None:
        """Compile the trees of the policy in `slot` ("router" or "shadow_router") on a
        background thread (the compiler itself runs in a time- and memory-limited child
        process: `compiled.compile_booster`), then swap in the same model deciding
        through them, unless a reload replaced it meanwhile. Returns an event set when done
        (None when there is nothing to compile)."""
        router = getattr(self, slot)
        artifact = router.context.policy.artifact if router is not None else None
        model = artifact.model if artifact is not None else None
        if slot == "router":
            self.trees = "none" if model is None else "lightgbm"
        if model is None or not model.is_lightgbm or not self.settings.compiled_cache:
            return None
        if slot == "router":
            self.trees = "compiling"
        done = threading.Event()

        def work() -> None:
            try:
                compile_model(model, self.settings.compiled_cache,
                              timeout_s=self.settings.compile_timeout_s,
                              memory_bytes=self.settings.compile_memory_mb * 2**20)
                with self._reload_lock:
                    current = getattr(self, slot)
                    if current is None or current.context.policy.artifact is not artifact:
                        return  # replaced while compiling: the newer model compiles itself
                    if model.compiled is not None:
                        setattr(self, slot, self._build_router(RoutingPolicy(
                            self.catalog, self.policy_settings, artifact, seed=self._seed)))
                    if slot == "router":
                        self.trees = "compiled" if model.compiled is not None else "lightgbm"
            except Exception:  # the thread must never take anything down with it
                log.exception("swapping in the compiled trees failed; LightGBM serves")
                if slot == "router":
                    self.trees = "lightgbm"
            finally:
                done.set()

        threading.Thread(target=work, name=f"compile-{slot}", daemon=True).start()
        if wait_s:
            done.wait(wait_s)
        return done

    def admin_token(self) -> str | None:
        return os.environ.get(self.settings.admin_token_env) or None

    def close(self) -> None:
        self.decision_log.close()
