"""One world: the generator's traffic and the log world model's logs describe the same tasks.

course-inputs writes courses with the world's draws and router-simulate simulates the same
draws; the generator computes its routing features with the function the world uses. So
for the same seed both sides hold the same tasks with the same features, and the monitor's
drift statistics between them are near zero; only what a model writes (its output length,
the monitor's `expected_output_tokens`) is random on both sides. The regenerated and added
items of phases 4 and 5 are not in the world: the drift check reads the planned tasks.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from pipeline.generator.cli import load_inputs, run
from pipeline.simulate_cli import run_simulate
from pipeline.world.inputs_cli import write_inputs
from pipeline.world.settings import world_settings
from router_model.config import yaml_defaults
from router_model.logs.attempts import read_attempts
from tests.helpers import compose_config, tmp_paths
from tests.pipeline.generator.helpers import generate_config, simulator
from training.monitoring.drift import DriftSettings, feature_drift, outcome_drift
from training.reference import feature_reference, outcome_reference, task_frame

N_COURSES, SEED = 4, 4242  # each world course is a full one: about a minute apiece


@pytest.mark.slow
def test_generator_traffic_and_simulated_logs_are_one_world(tmp_path, embedder, monkeypatch):
    monkeypatch.setenv("PROVIDER_SIM_API_KEY", "k")
    sim_cfg = compose_config("router_simulate", [*tmp_paths(tmp_path / "sim"),
                                                 f"simulate.n_courses={N_COURSES}",
                                                 f"simulate.seed={SEED}"])
    OmegaConf.resolve(sim_cfg)
    run_simulate(sim_cfg)
    world_logs = read_attempts(sim_cfg.paths.logs).frame
    write_inputs(world_settings(sim_cfg.simulate), N_COURSES, tmp_path / "inputs", SEED)
    with simulator() as (url, _):
        run(generate_config(tmp_path / "gen", url), load_inputs([tmp_path / "inputs"]),
            embedder)
    traffic = read_attempts(tmp_path / "gen/out/attempts").frame
    traffic["task_id"] = traffic["task_id"].str.split("@").str[0]  # ids carry the run
    planned = traffic[~traffic["task_id"].str.endswith(("-p4", "-p5"))]

    # The same tasks with the same routing features, computed by one function.
    def features(logs):
        first = logs.sort_values("attempt").groupby("task_id").first()
        return first[["field", "prompt_tokens", "context_tokens"]].sort_index()

    assert features(planned).equals(features(world_logs))

    # The monitor's view: PSI of every feature against the world's reference, on the planned
    # tasks (the world does not simulate what phases 4 and 5 add: regenerated and new items).
    settings = yaml_defaults(DriftSettings, "monitor", "drift", min_tasks=1)
    reference = feature_reference(task_frame(world_logs))
    rows = {r["feature"]: r for r in feature_drift(reference, task_frame(planned), settings)}
    print({k: round(r["psi"], 4) for k, r in rows.items()})
    random_side = {"expected_output_tokens"}  # model output lengths: random on both sides
    for name, row in rows.items():
        assert not row.get("absent"), name
        assert row["psi"] < (0.25 if name in random_side else 0.1), (name, row["psi"])
    outcomes = outcome_drift(outcome_reference(task_frame(world_logs)), task_frame(planned),
                             settings)
    assert not any(r["alert"] for r in outcomes["rates"])
