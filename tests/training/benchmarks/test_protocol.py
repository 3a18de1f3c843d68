"""The benchmark protocol pieces: grouped questions, split mapping, missing scores, recorded
costs, operating points chosen on training prompts, embedding windows, config lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from tests.helpers import compose_config
from training.benchmarks.cli import benchmark_job, benchmark_spec, load_spec
from training.benchmarks.data import build_table, folds
from training.benchmarks.operating import choose_threshold, route
from training.benchmarks.text_features import collapsed_families, windows

DEFAULTS = OmegaConf.to_container(compose_config("router_benchmark").spec_defaults)
TOY = {"data": "toy",
    "name": "toy", "family": "family", "default_completion_tokens": 10,
    "models": [{"name": "small", "price_in_per_m": 1.0, "price_out_per_m": 1.0},
               {"name": "big", "price_in_per_m": 10.0, "price_out_per_m": 10.0}],
    "gate": {"pass_score": 0.8}, "split": {"kind": "kfold", "folds": 2, "seed": 0}}
SPEC = benchmark_spec(TOY, DEFAULTS)


def toy_spec(**changes):
    return benchmark_spec({**TOY, **changes}, DEFAULTS)


def turns_long() -> pd.DataFrame:
    """Three questions x two turns; turn 2 repeats turn 1's text plus a follow-up."""
    rows = []
    for q in range(3):
        for t in (1, 2):
            for model, score in (("small", 0.5 + 0.1 * t), ("big", 1.0)):
                rows.append({"prompt_id": f"mt/{q}/turn{t}", "model": model, "score": score,
                             "prompt": f"question {q}" + (" follow-up" if t == 2 else ""),
                             "family": "writing", "prompt_tokens_est": 100.0 * t})
    return pd.DataFrame(rows)


def test_grouped_questions_route_from_turn_one_and_score_both_turns():
    spec = toy_spec(group={"pattern": r"^(mt/\d+)/turn\d+$"})
    table = build_table(spec, turns_long())
    assert table.prompts["prompt_id"].tolist() == ["mt/0", "mt/1", "mt/2"]
    assert table.prompts["prompt"].tolist() == ["question 0", "question 1", "question 2"]
    assert table.score[:, 0] == pytest.approx([0.65] * 3)  # mean of 0.6 and 0.7
    # cost is both calls: (100 + 10) and (200 + 10) tokens at $1 / 1M on the small model
    assert table.cost[0, 0] == pytest.approx(320 / 1e6)
    for train, test in folds(table, spec.split):  # a question is one unit of a fold
        assert not set(table.prompts["prompt_id"].iloc[train]) & set(
            table.prompts["prompt_id"].iloc[test])


def test_a_question_missing_a_turn_is_dropped_and_counted():
    spec = toy_spec(group={"pattern": r"^(mt/\d+)/turn\d+$"})
    long = turns_long()
    table = build_table(spec, long[long["prompt_id"] != "mt/2/turn1"])
    assert table.prompts["prompt_id"].tolist() == ["mt/0", "mt/1"]
    assert table.dropped["questions missing a turn"] == 1


def test_missing_scores_are_dropped_counted_and_warned_about():
    long = turns_long()
    long.loc[(long["prompt_id"] == "mt/1/turn2") & (long["model"] == "big"), "score"] = np.nan
    with pytest.warns(UserWarning, match="1 prompts have a missing"):
        table = build_table(SPEC, long)
    assert table.dropped["prompts with a missing score"] == 1
    assert "mt/1/turn2" not in set(table.prompts["prompt_id"])
    assert np.isfinite(table.score).all()


def test_recorded_cost_wins_over_prices_and_prices_are_then_optional():
    long = turns_long().assign(cost_usd=lambda d: np.where(d["model"] == "big", 0.5, 0.01))
    spec = toy_spec(models=[{"name": "small"}, {"name": "big"}])
    table = build_table(spec, long)
    assert np.unique(table.cost[:, 0]).tolist() == [0.01]
    assert np.unique(table.cost[:, 1]).tolist() == [0.5]
    with pytest.raises(ValueError, match="no price_in_per_m for small"):
        build_table(spec, turns_long())


def test_split_values_are_mapped_and_unknown_ones_are_listed():
    long = turns_long().assign(split=lambda d: np.where(
        d["prompt_id"].str.startswith("mt/0"), "holdout", "fit"))
    table = build_table(SPEC, long)
    with pytest.raises(ValueError, match=r"holds \['fit', 'holdout'\]"):
        folds(table, {"kind": "given"})
    (train, test), = folds(table, {"kind": "given", "train": ["fit"], "test": ["holdout"]})
    assert set(table.prompts["prompt_id"].iloc[test]) == {"mt/0/turn1", "mt/0/turn2"}
    assert len(train) == 4


def test_the_operating_point_is_the_cheapest_knob_meeting_the_training_target():
    # two models; gain predicted per prompt; the strong one helps only on prompts 0 and 1
    p = np.array([[0.2, 0.9], [0.3, 0.9], [0.9, 0.9], [0.8, 0.85]])
    score = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    cost = np.array([[1.0, 10.0]] * 4)
    tau = choose_threshold(p, score, cost, share=1.0)
    assert route(p, tau).tolist() == [1, 1, 0, 0]
    # 75% of premium quality needs only one of the two hard prompts on the strong model
    assert route(p, choose_threshold(p, score, cost, share=0.75)).sum() == 1
    three = np.array([[0.9, 0.95, 0.99], [0.1, 0.6, 0.99]])
    assert route(three, 0.5).tolist() == [0, 1] and route(three, 2.0).tolist() == [2, 2]


def test_embedding_windows_head_tail_and_chunks():
    text = "a b c d e"
    offsets = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert windows(text, offsets, 2, "head") == [text]  # MiniLM truncates the head itself
    assert windows(text, offsets, 2, "tail") == ["d e"]
    assert windows(text, offsets, 2, "chunks") == ["a b", "c d", "e"]
    assert windows(text, offsets, 8, "tail") == [text]
    with pytest.raises(ValueError, match=r"embedding\.text='middle'"):
        windows(text, offsets, 2, "middle")


def test_collapsed_embeddings_are_reported_per_family():
    same = np.ones((4, 3), dtype=np.float32)
    vectors = np.vstack([same, np.eye(3, dtype=np.float32)])
    families = ["arc"] * 4 + ["mmlu"] * 3
    texts = [f"t{i}" for i in range(7)]
    with pytest.warns(UserWarning, match="collapsed embeddings in 1 families"):
        found = collapsed_families(texts, families, vectors, share=0.5)
    assert found == {"arc": {"distinct_prompts": 4, "distinct_embeddings": 1}}


def test_user_benchmark_dirs_come_before_the_package(tmp_path):
    from router_model.config import CONF_DIR

    shipped = (Path(CONF_DIR) / "benchmark" / "routellm_gsm8k.yaml").read_text()
    (tmp_path / "routellm_gsm8k.yaml").write_text(
        shipped.replace("name: routellm_gsm8k", "name: overridden"))
    mine = benchmark_job(compose_config("router_benchmark", [
        "run=[routellm_gsm8k]", f"benchmark_dirs=[{tmp_path}]"]))
    assert mine.specs[0].name == "overridden"
    plain = benchmark_job(compose_config("router_benchmark", ["run=[routellm_gsm8k]"]))
    assert plain.specs[0].name == "routellm_gsm8k"
    with pytest.raises(FileNotFoundError, match="no benchmark config 'nope'"):
        load_spec(mine.settings, "nope")


def test_a_benchmark_config_may_leave_out_only_what_spec_defaults_holds():
    assert SPEC.group is None and SPEC.include == {} and not SPEC.exclude_contaminated
    without_models = {k: v for k, v in TOY.items() if k != "models"}
    with pytest.raises(ValueError, match=r"benchmark\.models is missing"):
        benchmark_spec(without_models, DEFAULTS)
