"""What an artifact learned about the catalog, and how today's catalog differs from it.

`router-train` records the tiers it learned (model id, provider, prices, context window,
ladder rank) and the gate's rules (thresholds and retries) in the artifact's manifest
(`catalog_record`, top-level keys `tiers` and `gate_rules`; the scorer's own version,
`gate_version`, is router_model.decide.gate's). Serving and the generator warn when today's
`conf/tiers` or gate rules differ (`catalog_differences`), `router-monitor` alerts on it
(`catalog_alerts`), and a ladder tier the model never saw is served by the rules
(`unseen_tiers`; the decision says so in its `fallback_reason`). A price or model swap in
YAML is then never silent, and a renamed tier is never guessed for.

Artifacts trained before this record have no `tiers` key: the tiers they saw are read from
their ladder statistics and lookup table, and nothing else is compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router_model.config import Catalog
from router_model.files import digest

TIER_KEYS = ("model_id", "provider", "price_in_per_m", "price_out_per_m", "context_window",
             "ladder_rank")


def gate_rules(catalog: Catalog) -> str:
    """A hash of the gate's rules: thresholds, retries and each field's own threshold (what
    the scorer's score is compared with; the scorer and its map are `gate_version`'s)."""
    g = catalog.gate
    fields = {n: f.pass_threshold for n, f in sorted(catalog.fields.items())
              if f.pass_threshold is not None}
    return "gate-" + digest("gate", g.pass_threshold, g.severe_threshold,
                            g.retries_per_tier, fields)[:12]


def catalog_record(catalog: Catalog) -> dict[str, Any]:
    """The manifest keys `tiers` and `gate_rules` for an artifact trained on `catalog`."""
    tiers = {name: {k: getattr(t, k) for k in TIER_KEYS} for name, t in catalog.tiers.items()}
    return {"tiers": tiers, "gate_rules": gate_rules(catalog)}


def seen_tiers(manifest: Mapping[str, Any]) -> set[str]:
    """The tiers an artifact learned: its record, else its statistics and lookup table."""
    if isinstance(manifest.get("tiers"), Mapping):
        return {str(t) for t in manifest["tiers"]}
    stats = (manifest.get("ladder_stats") or {}).get("tiers") or {}
    lookup = manifest.get("lookup") or {}
    return {str(t) for t in stats} | {str(t) for rates in lookup.values() for t in rates}


def unseen_tiers(manifest: Mapping[str, Any], catalog: Catalog) -> list[str]:
    """Ladder tiers of today's catalog the artifact never saw (a new or renamed tier)."""
    seen = seen_tiers(manifest)
    return [t for t in catalog.ladder if t not in seen] if seen else []


def catalog_differences(manifest: Mapping[str, Any], catalog: Catalog) -> list[str]:
    """Every difference between the catalog the artifact learned and today's, one line
    each (empty when they agree, or when the artifact recorded nothing to compare)."""
    out = [f"tier {t} is new to the model (it learned {sorted(seen_tiers(manifest))}): "
           "served by the rules until a retrain" for t in unseen_tiers(manifest, catalog)]
    recorded = manifest.get("tiers")
    if not isinstance(recorded, Mapping):
        return out
    for name, was in sorted(recorded.items()):
        if name not in catalog.tiers:
            out.append(f"tier {name} was learned but is gone from conf/tiers")
            continue
        now = catalog.tiers[name]
        for key in TIER_KEYS:
            if key in was and was[key] != getattr(now, key):
                out.append(f"tier {name}: {key} was {was[key]!r} when trained, now "
                           f"{getattr(now, key)!r}")
    learned_rules = manifest.get("gate_rules")
    current = gate_rules(catalog)
    if learned_rules and learned_rules != current:
        out.append(f"gate_rules (thresholds, retries) were {learned_rules} when trained, "
                   f"now {current}")
    return out


def catalog_alerts(manifest: Mapping[str, Any], catalog: Catalog) -> list[dict[str, Any]]:
    """`router-monitor` alerts, one per difference, in its alert format."""
    return [{"kind": "catalog", "name": line.split(":")[0], "statistic": "changed",
             "value": None, "threshold": None, "p_value": None,
             "advice": f"{line}; retrain on logs of the current catalog (router-train), or "
                       "restore the trained values in conf/tiers"}
            for line in catalog_differences(manifest, catalog)]
