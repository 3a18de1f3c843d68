"""Swap and retrain safety: what an artifact learned about the catalog against today's."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest

from router_model.catalog_check import (
    catalog_alerts,
    catalog_differences,
    catalog_record,
    gate_rules,
    seen_tiers,
    unseen_tiers,
)
from router_model.config import Catalog


def test_an_unchanged_catalog_has_no_differences(catalog):
    manifest = catalog_record(catalog)
    assert catalog_differences(manifest, catalog) == [] and unseen_tiers(manifest, catalog) == []
    assert manifest["gate_rules"] == gate_rules(catalog)
    json.dumps(manifest)  # the manifest is JSON


def test_a_price_or_model_swap_is_named_with_both_values(catalog):
    manifest = catalog_record(catalog)
    t = catalog.tiers["gpt-oss-120b"]
    swapped = Catalog(tiers={**catalog.tiers, "gpt-oss-120b": replace(
        t, price_out_per_m=0.9, model_id="openai/gpt-oss-120b-v2")}, gate=catalog.gate,
        fields=catalog.fields)
    lines = catalog_differences(manifest, swapped)
    assert "tier gpt-oss-120b: price_out_per_m was 0.45 when trained, now 0.9" in lines
    assert any("model_id was 'openai/gpt-oss-120b'" in line for line in lines)
    alerts = catalog_alerts(manifest, swapped)
    assert {a["kind"] for a in alerts} == {"catalog"} and len(alerts) == 2


def test_a_renamed_tier_is_unseen_and_the_old_name_is_gone(catalog):
    manifest = catalog_record(catalog)  # trained when gpt-oss-120b was called gpt-oss-big
    manifest["tiers"]["gpt-oss-big"] = manifest["tiers"].pop("gpt-oss-120b")
    assert unseen_tiers(manifest, catalog) == ["gpt-oss-120b"]
    lines = catalog_differences(manifest, catalog)
    assert any("tier gpt-oss-120b is new to the model" in line for line in lines)
    assert "tier gpt-oss-big was learned but is gone from conf/tiers" in lines


def test_a_gate_change_is_a_difference(catalog):
    manifest = catalog_record(catalog)
    gate = replace(catalog.gate, pass_threshold=0.8)
    moved = Catalog(tiers=catalog.tiers, gate=gate, fields=catalog.fields)
    assert any(line.startswith("gate_rules (thresholds, retries) were") for line in
               catalog_differences(manifest, moved))


def test_old_artifacts_name_their_tiers_by_statistics(catalog):
    manifest = {"ladder_stats": {"tiers": {"gpt-oss-20b": {}, "gpt-oss-120b": {}}},
                "lookup": {"course_title": {"qwen3-max": 0.9}}}
    assert seen_tiers(manifest) == {"gpt-oss-20b", "gpt-oss-120b", "qwen3-max"}
    assert catalog_differences(manifest, catalog) == []


@pytest.mark.slow
def test_serving_routes_an_unseen_tier_by_the_rules_and_logs_why(trained_router, tmp_path,
                                                                caplog):
    from router_model.contract import EXAMPLE_TASK
    from router_model.serve.core import RouterService
    from tests.helpers import compose_config, tmp_paths
    from tests.router_model.test_extension import FIFTH_TIER

    cfg, result = trained_router
    log = tmp_path / "decisions.jsonl"
    serve = compose_config("router_serve", [*tmp_paths(tmp_path), *FIFTH_TIER[:1],
                                            f"serve.artifact={cfg.router.artifact}",
                                            f"serve.decision_log={log}",
                                            "serve.reload_poll_s=0"])
    caplog.set_level(logging.WARNING)
    service = RouterService.from_config(serve)
    decision = service.route(EXAMPLE_TASK)
    service.close()
    assert decision["source"] == "rules"
    assert decision["fallback_reason"].startswith("unseen_tier: gpt-5-mini")
    logged = json.loads(log.read_text().splitlines()[-1])
    assert logged["decision"]["fallback_reason"].startswith("unseen_tier: gpt-5-mini")
    assert "tier gpt-5-mini is new to the model" in caplog.text
    assert result.artifact.manifest["tiers"]["gpt-oss-20b"]["price_in_per_m"] == 0.03
    assert result.metrics["publish"]["published"] is True


@pytest.mark.slow
@pytest.mark.parametrize(("change", "warning"), [
    ("gate.pass_threshold=0.8", "gate_rules (thresholds, retries) were"),
    ("gate.scorer=brief_cosine", "the gate changed since the router learned it")])
def test_serving_warns_when_the_gate_changed_since_training(trained_router, tmp_path, caplog,
                                                            change, warning):
    from router_model.serve.core import RouterService
    from tests.helpers import compose_config, tmp_paths

    cfg, _ = trained_router

    def served(*overrides: str) -> str:
        caplog.clear()
        serve = compose_config("router_serve", [
            *tmp_paths(tmp_path), *overrides, f"serve.artifact={cfg.router.artifact}",
            f"serve.decision_log={tmp_path}/decisions.jsonl", "serve.reload_poll_s=0"])
        RouterService.from_config(serve).close()
        return caplog.text

    caplog.set_level(logging.WARNING)
    assert warning not in served()  # the gate it learned
    assert warning in served(change)
