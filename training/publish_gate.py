"""router-train publishes only a model that beats its own lookup baseline.

The lookup table (per field and tier, the first-attempt pass rate) is the simplest model of
the same logs. A retrain whose held-out log-loss is worse than the table's (24 courses gave
0.384 against 0.309) would route worse than the table; it is saved as a candidate instead,
`LATEST` stays, and the metrics and the terminal say why. `train.publish_if_worse=true`
publishes it anyway; `train.publish=false` never publishes (router-promote decides).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss

from router_model.model.lookup import LookupTable

log = logging.getLogger("stage5_router.train")


def lookup_log_loss(lookup: Mapping[str, Mapping[str, float]], ladder: Sequence[str],
                    rows: pd.DataFrame) -> float | None:
    """Held-out log-loss of the lookup table on the rows' (field, tier) examples."""
    rows = rows[rows["tier"].isin(list(ladder))]
    if rows.empty or not lookup:
        return None
    p_tiers = LookupTable(lookup, ladder)(rows)
    col = pd.Index(list(ladder)).get_indexer(rows["tier"])
    p = np.clip(p_tiers[np.arange(len(rows)), col], 1e-6, 1 - 1e-6)
    return float(log_loss(rows["label"].to_numpy(int), p, labels=[0, 1]))


def publish_verdict(model_loss: float | None, baseline_loss: float | None, publish: bool,
                    publish_if_worse: bool) -> dict[str, Any]:
    """Whether to move LATEST, and why (the `publish` block of metrics.json)."""
    out = {"log_loss": model_loss, "lookup_log_loss": baseline_loss}
    if not publish:
        return {**out, "published": False, "reason": "train.publish=false: a candidate for "
                                                      "router-promote"}
    worse = (model_loss is not None and baseline_loss is not None
             and model_loss > baseline_loss)
    if not worse:
        return {**out, "published": True, "reason": "beats its lookup baseline on held-out "
                                                    "log-loss" if baseline_loss else
                "no lookup baseline to compare with"}
    if publish_if_worse:
        return {**out, "published": True, "reason": (
            f"published although worse than its lookup baseline ({model_loss:.4f} > "
            f"{baseline_loss:.4f}): train.publish_if_worse=true")}
    return {**out, "published": False, "reason": (
        f"not published: held-out log-loss {model_loss:.4f} is worse than its own lookup "
        f"baseline's {baseline_loss:.4f}; saved as a candidate (more or broader logs, or "
        "train.publish_if_worse=true to publish anyway)")}


def publish_gate(train: Any, metrics: dict[str, Any], rows: pd.DataFrame,
                 lookup: Mapping[str, Mapping[str, float]], ladder: Sequence[str]) -> bool:
    """Decide, record the verdict in `metrics["publish"]`, warn when it holds one back."""
    model_loss = (metrics.get("overall") or {}).get("log_loss")
    verdict = publish_verdict(model_loss, lookup_log_loss(lookup, ladder, rows),
                              train.publish, train.publish_if_worse)
    metrics["publish"] = verdict
    if (train.publish and not verdict["published"]) or "although" in verdict["reason"]:
        log.warning("router-train: %s", verdict["reason"])
    return bool(verdict["published"])
