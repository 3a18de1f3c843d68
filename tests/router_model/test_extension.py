"""What it costs to extend the router: a fifth tier is YAML only, a new router is one class
plus one config entry, and a per-field gate threshold is YAML only (and replay and serving
agree on it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from router_model.config import Catalog
from router_model.decide.policy import RoutingPolicy
from router_model.decide.replay import cube_from_table, replay
from router_model.decide.routers import Router, RouterContext, build_router
from router_model.serve.core import RouterService
from tests.helpers import compose_config, policy_settings, tmp_paths

FIFTH_TIER = [
    "+tiers.gpt-5-mini={model_id: openai/gpt-5-mini, provider: openrouter, "
    "base_url: 'https://openrouter.ai/api/v1', api_key_env: OPENROUTER_API_KEY, "
    "price_in_per_m: 2.0, price_out_per_m: 8.0, context_window: 400000, ladder_rank: 3, "
    "first_token_s: 1.0, output_tokens_per_s: 60, deployments: {}, request: {"
    "reasoning_effort: null, max_tokens_param: max_completion_tokens, response_format: null, "
    "extra_body: {}}}",
    "+simulate.tiers.gpt-5-mini={skill: 1.6, language_gap: 0.1, schema_error: 0.0005, "
    "off_topic: 0.0003, completion_scale: 1.0}",
]


class LongPromptsToPremium(Router):
    """A router written for this test: premium above a prompt size, else the cheapest."""

    def __init__(self, context: RouterContext, min_tokens: int = 3000) -> None:
        super().__init__(context)
        self.min_tokens = min_tokens

    def start_tiers(self, tasks: pd.DataFrame) -> np.ndarray:
        top = len(self.context.catalog.ladder) - 1
        return np.where(tasks["prompt_tokens"].to_numpy() >= self.min_tokens, top, 0)


@pytest.mark.slow
def test_a_fifth_tier_needs_only_yaml(tmp_path):
    from pipeline.simulate_cli import run_simulate
    from training.train import run_train
    from training.train_cli import train_job

    paths = tmp_paths(tmp_path)
    run_simulate(compose_config("router_simulate", [
        *paths, *FIFTH_TIER, "simulate.n_courses=300"]))
    logs = pd.read_parquet(f"{tmp_path}/data/attempt_logs.parquet")
    assert "gpt-5-mini" in set(logs["tier"])  # the ladder climbs to the new top tier
    cfg = compose_config("router_train", [*paths, *FIFTH_TIER[:1],
                                          "train.lightgbm.n_estimators=20",
                                          "train.baseline=null"])
    OmegaConf.resolve(cfg)
    run_train(train_job(cfg), progress=False)
    serve = compose_config("router_serve", [*paths, *FIFTH_TIER[:1],
                                            f"serve.decision_log={tmp_path}/d.jsonl"])
    decision = RouterService.from_config(serve).route({"field": "exercise",
                                                       "prompt_tokens": 900})
    assert set(decision["pass_probabilities"]) == {"gpt-oss-20b", "gpt-oss-120b", "qwen3-max",
                                                   "gpt-5-mini"}
    assert decision["ladder"][-1] == "gpt-5-mini"


def test_a_new_router_is_one_class_and_one_config_entry(cfg, tmp_path):
    entry = f"+routers.long-to-premium={{_target_: {__name__}.LongPromptsToPremium, " \
            "min_tokens: 2500}"
    serve = compose_config("router_serve", [entry, "serve.router=long-to-premium",
                                            "serve.artifact=null",
                                            f"serve.decision_log={tmp_path}/d.jsonl"])
    service = RouterService.from_config(serve)
    short = service.route({"field": "course_title", "prompt_tokens": 100})
    long = service.route({"field": "exercise", "prompt_tokens": 5000})
    assert (short["start_tier"], long["start_tier"]) == ("gpt-oss-20b", "qwen3-max")
    assert long["router"] == "long-to-premium"
    catalog = Catalog.from_config(serve)
    context = RouterContext(catalog, RoutingPolicy(catalog, policy_settings()))
    router = build_router("long-to-premium", serve.routers, context)
    tasks = pd.DataFrame({"field": ["exercise"] * 3, "prompt_tokens": [10, 2499, 2500]})
    assert router.start_tiers(tasks).tolist() == [0, 0, 2]


def test_per_field_thresholds_need_only_yaml_and_replay_and_serving_agree(tmp_path):
    serve = compose_config("router_serve", ["fields.exercise.pass_threshold=0.9",
                                            "serve.artifact=null",
                                            f"serve.decision_log={tmp_path}/d.jsonl"])
    catalog = Catalog.from_config(serve)
    service = RouterService.from_config(serve)
    # One attempt at similarity 0.85 on each of two fields: passes the gate's 0.75, not 0.9.
    fields = ["exercise", "lesson_content"]
    n, tiers = 2, len(catalog.tier_names)
    quality = np.full((n, tiers, 3), 0.95)
    quality[:, 0, 0] = 0.85
    tasks = pd.DataFrame({"task_id": ["a", "b"], "field": fields, "prompt_tokens": [10, 10],
                          "context_tokens": [0, 0]})
    outcomes = [{"task_id": t, "tier": name, "attempt": a + 1, "similarity": quality[i, j, a],
                 "quality": quality[i, j, a], "schema_valid": True, "cost_usd": 0.01,
                 "gate_cost_usd": 0.0, "latency_s": 1.0}
                for i, t in enumerate(tasks["task_id"]) for j, name in enumerate(
                    catalog.tier_names) for a in range(3)]
    cube = cube_from_table(tasks, pd.DataFrame(outcomes), catalog)
    result = replay(cube, np.zeros(n, dtype=np.int64), catalog)
    replay_accepts_first = (result.calls == 1).tolist()
    served = [service.escalate(tier="gpt-oss-20b", similarity=0.85, schema_valid=True,
                               field=f)["action"] == "accept" for f in fields]
    assert replay_accepts_first == served == [False, True]
