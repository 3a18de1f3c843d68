"""Live gauges for /metrics: what the router has been seeing, over its last decisions.

Rolling over the last `window` decisions (not since start-up, so a change shows within one
window): the mean served pass probability per field, and the rates of unknown categories,
missing features and rule fallbacks. A Prometheus alert on these fires without anyone running
router-monitor; router-monitor then says why.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any


class LiveGauges:
    """A bounded window of (field, served p, unknown?, missing?, fallback?) per decision."""

    def __init__(self, window: int = 1000) -> None:
        self.window = window
        self._rows: deque[tuple[str, float, bool, bool, bool]] = deque(maxlen=window)
        self._lock = threading.Lock()

    def observe(self, fields: Sequence[Any], decisions: Sequence[dict[str, Any]]) -> None:
        rows = []
        for field, d in zip(fields, decisions, strict=True):
            probabilities = d.get("pass_probabilities")
            p = probabilities.get(str(d.get("start_tier"))) if isinstance(
                probabilities, dict) else None
            p = float(p) if isinstance(p, (int, float)) and not isinstance(p, bool) \
                and 0.0 <= p <= 1.0 else math.nan
            rows.append((str(field), p, bool(d.get("unknown_categories")),
                         bool(d.get("missing_features")), bool(d.get("fallback_reason"))))
        with self._lock:
            self._rows.extend(rows)

    def snapshot(self) -> dict[str, Any]:
        """Rates over the window, and the mean served probability per field (where the
        decision carried one: rule fallbacks do not)."""
        with self._lock:
            rows = list(self._rows)
        n = len(rows)
        sums: dict[str, list[float]] = {}
        for field, p, *_ in rows:
            if not math.isnan(p):
                sums.setdefault(field, []).append(p)
        return {"decisions": n,
                "unknown_category_rate": sum(r[2] for r in rows) / n if n else 0.0,
                "missing_feature_rate": sum(r[3] for r in rows) / n if n else 0.0,
                "fallback_rate": sum(r[4] for r in rows) / n if n else 0.0,
                "pass_probability": {f: sum(v) / len(v) for f, v in sorted(sums.items())}}

    def collect(self) -> Iterator[Any]:
        """The prometheus_client collector protocol: read at scrape time."""
        from prometheus_client.core import GaugeMetricFamily

        snap = self.snapshot()
        yield GaugeMetricFamily("router_live_window_decisions", "Decisions in the rolling "
                                "window the live gauges cover", value=snap["decisions"])
        for key in ("unknown_category_rate", "missing_feature_rate", "fallback_rate"):
            share = key.removesuffix("_rate")  # a share in [0, 1]: Prometheus' `_ratio`
            yield GaugeMetricFamily(f"router_live_{share}_ratio", f"{share.replace('_', ' ')} "
                                    "share of the rolling window of recent decisions",
                                    value=snap[key])
        family = GaugeMetricFamily("router_live_pass_probability", "Mean served pass "
                                   "probability of the start tier, per field, over the rolling "
                                   "window", labels=["field"])
        for field, p in snap["pass_probability"].items():
            family.add_metric([field], p)
        yield family
