"""The issue's target: 30% injected provider faults on both deployments of every tier cost
no field, cause no escalation, and cost within 2% of the fault-free run (same world).

    pytest tests/pipeline/generator/test_fault_target.py -s
"""

from __future__ import annotations

import pytest

from pipeline.generator.cli import load_inputs, run
from router_model.logs.attempts import read_attempts
from tests.pipeline.generator.helpers import EXAMPLES, generate_config, simulator

pytestmark = pytest.mark.slow
FAULTS = {"rate_limit": 0.1, "server_error": 0.1, "timeout": 0.1}


def test_30_percent_faults_with_a_second_deployment(tmp_path, embedder, monkeypatch):
    monkeypatch.setenv("PROVIDER_SIM_API_KEY", "k")
    inputs = load_inputs([EXAMPLES / "short.json", EXAMPLES / "typical.json"])
    with simulator(embedder) as (url, _):
        clean = run(generate_config(tmp_path / "clean", url), inputs, embedder)
    knobs = {"faults": FAULTS, "retry_after_s": 0.05, "hang_s": 5}
    with simulator(embedder, **knobs) as (url, a), simulator(embedder, **knobs) as (fb, b):
        faulty = run(generate_config(tmp_path / "faulty", url, f"provider.fallback.base_url={fb}",
                                     "provider.idle_timeout_s=1", "provider.retry.backoff_s=0.05"),
                     inputs, embedder)
        injected = sum(v for s in (a, b) for k, v in s.stats.items() if k.startswith("fault_"))
        requests = a.stats["requests"] + b.stats["requests"]
    logs = read_attempts(tmp_path / "faulty/out/attempts").frame
    by_reason = logs["escalation_reason"].value_counts().to_dict()
    lost = sum(len(s.get("flagged", [])) for s in faulty["courses"].values())
    cost_clean = clean["total"]["cost_usd_per_course"]
    cost_faulty = faulty["total"]["cost_usd_per_course"]
    print(f"\nfaults injected {injected}/{requests} requests ({injected / requests:.0%}); "
          f"courses failed {faulty['total']['failed']}; fields flagged {lost}; escalations by "
          f"reason {by_reason}; provider failures absorbed {int(logs['provider_retries'].sum())}"
          f"; $/course clean {cost_clean:.6f} faulty {cost_faulty:.6f} "
          f"({(cost_faulty / cost_clean - 1):+.2%})")
    assert faulty["total"]["failed"] == 0 and clean["total"]["failed"] == 0
    assert injected / requests > 0.2
    assert "tier_unavailable" not in by_reason
    assert not set(logs["error_kind"]) & {"tier_unavailable", "provider_rejected",
                                          "rate_limit", "timeout", "provider_error"}
    assert abs(cost_faulty / cost_clean - 1) <= 0.02
