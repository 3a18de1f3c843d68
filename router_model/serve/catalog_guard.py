"""Serving's side of swap safety: warn when the catalog changed since training, and serve a
tier the model never saw from the rules (`router_model/catalog_check.py` says what changed).

`guard(policy, catalog)` is applied to every policy the service builds (at start-up and on
every reload): a learned policy whose artifact never saw one of today's ladder tiers is
replaced by the rules, with `fallback_reason` `unseen_tier: ...`, which every decision and
the decision log carry. Other differences (a price, a model id, the gate) are logged as
warnings and keep the model serving: its pass probabilities are still the best there are,
and router-monitor turns the same differences into alerts.
"""

from __future__ import annotations

import logging
from typing import Any

from router_model.catalog_check import catalog_differences, unseen_tiers
from router_model.config import Catalog
from router_model.decide.gate import warn_if_gate_changed
from router_model.decide.policy import RoutingPolicy

log = logging.getLogger("stage5_router.serving")


def catalog_of(service: Any) -> Catalog:
    return service.catalog


def warn_on_catalog_change(policy: RoutingPolicy, catalog: Catalog) -> list[str]:
    """Log one warning per difference between the artifact's catalog and `catalog`."""
    if not policy.learned:
        return []
    changes = catalog_differences(policy.artifact.manifest, catalog)
    for line in changes:
        log.warning("%s: %s", policy.router_version, line)
    return changes


def guard(policy: RoutingPolicy, catalog: Catalog) -> RoutingPolicy:
    """`policy`, or the rules when its model never saw a ladder tier of `catalog`."""
    if not policy.learned:
        return policy
    warn_on_catalog_change(policy, catalog)
    warn_if_gate_changed(catalog.gate, policy.artifact, log)
    unseen = unseen_tiers(policy.artifact.manifest, catalog)
    if not unseen:
        return policy
    reason = (f"unseen_tier: {', '.join(unseen)} (model {policy.router_version} never saw "
              "it; retrain to route it)")
    return RoutingPolicy(catalog, policy.settings, None, fallback_reason=reason)
