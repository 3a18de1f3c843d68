"""Every Prometheus series the service exposes: the one home of a new metric.

Names follow Prometheus' conventions: base units in the name (`_seconds`, `_bytes`), `_total`
on counters, `_ratio` on shares in [0, 1], and one unit per series. Each app has its own
registry (several apps can live in one process); `/metrics` serves it with the replica's
name added to every series.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

from router_model.serve.core import RouterService
from router_model.serve.live_gauges import LiveGauges


class ReplicaLabelled:
    """A registry's metrics with `replica="<name>"` added to every series, at scrape time.

    One Prometheus scraping several replicas then tells their series apart by a name that
    survives a restart on another address (Prometheus's own `instance` label is the address),
    and that name is the one on each replica's decision-log lines. prometheus-client has no
    constant labels, so this wraps the registry instead of labelling each metric (and
    covers the custom collectors too).
    """

    def __init__(self, registry: CollectorRegistry, replica: str) -> None:
        self.registry = registry
        self.replica = replica

    def collect(self) -> Iterator[Any]:
        for family in self.registry.collect():
            labelled = copy.copy(family)  # never mutate what a collector may hand out again
            labelled.samples = [s._replace(labels={**s.labels, "replica": self.replica})
                                for s in family.samples]
            yield labelled


class Metrics:
    """The service's series; `exposed` is what /metrics serves."""

    def __init__(self, gauge_window: int = 1000, replica: str = "") -> None:
        self.registry = CollectorRegistry()
        self.exposed = ReplicaLabelled(self.registry, replica)
        self.live = LiveGauges(gauge_window)
        self.registry.register(self.live)
        self.decisions = Counter("router_decisions", "Routing decisions",
                                 ["tier", "source"], registry=self.registry)
        self.fallbacks = Counter("router_fallbacks", "Decisions answered from the rules",
                                 ["reason"], registry=self.registry)
        self.latency = Histogram("router_decision_latency_seconds",
                                 "Time to decide one request", ["endpoint"],
                                 buckets=(5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2,
                                          2.5e-2, 0.1, 0.5), registry=self.registry)
        self.model = Gauge("router_model_info", "The model being served (value 1)",
                           ["router_version", "mode"], registry=self.registry)
        self.reloads = Counter("router_reloads", "Model reloads", ["result"],
                               registry=self.registry)
        self.degraded = Gauge("router_degraded", "1 while the rules answer in place of the "
                              "configured model (it did not load, or it failed on the last "
                              "decision)", registry=self.registry)
        self.reload_rejected = Gauge("router_reload_rejected", "1 while the newest reload was "
                                     "rejected (the model served before it, or the rules, "
                                     "keeps serving)", registry=self.registry)
        self.compiled = Gauge("router_compiled_trees", "1 while the served model decides "
                              "through compiled trees (0: LightGBM, or no model)",
                              registry=self.registry)

    def observe(self, endpoint: str, seconds: float, decisions: list[dict[str, Any]],
                fields: list[Any]) -> None:
        self.latency.labels(endpoint).observe(seconds)
        self.live.observe(fields, decisions)
        for d in decisions:
            self.decisions.labels(d["start_tier"], d["source"]).inc()
            if d.get("fallback_reason"):
                self.fallbacks.labels(d["fallback_reason"].split(":")[0]).inc()

    def reloaded(self, result: dict[str, Any], readiness: dict[str, Any]) -> None:
        """Count a reload attempt and show the model now served."""
        self.reloads.labels("ok" if result["reloaded"] else "rejected").inc()
        self.set_model(readiness)

    def set_model(self, readiness: dict[str, Any]) -> None:
        self.model.clear()
        self.model.labels(readiness["router_version"], readiness["mode"]).set(1)

    def watch_service(self, service: RouterService) -> None:
        """The gauges that must never lie, read from the service at scrape time."""
        self.degraded.set_function(lambda: float(service.degraded()))
        self.reload_rejected.set_function(lambda: float(
            service.last_reload is not None and not service.last_reload["ok"]))
        self.compiled.set_function(lambda: float(service.trees == "compiled"))

    def watch_decision_log(self, service: RouterService) -> None:
        """What rotation deleted from the decision log, and lines that could not be written;
        read from the log at scrape time."""
        self.registry.register(_DecisionLogCollector(service))


class _DecisionLogCollector:
    def __init__(self, service: RouterService) -> None:
        self.service = service

    def collect(self) -> Iterator[Any]:
        dropped = self.service.decision_log.dropped
        size = CounterMetricFamily("router_decision_log_dropped_bytes", "Decision-log bytes "
                                   "deleted by rotation (the oldest backup)")
        size.add_metric([], dropped["bytes"])
        yield size
        lines = CounterMetricFamily("router_decision_log_dropped_lines", "Decision-log lines "
                                    "lost: deleted by rotation, or never written",
                                    labels=["reason"])
        lines.add_metric(["rotated"], dropped["lines"])
        lines.add_metric(["unwritten"], dropped["unwritten_lines"])
        yield lines
