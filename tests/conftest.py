"""Session fixtures: the default config and catalog, built once."""

from __future__ import annotations

import os

import pytest
from omegaconf import DictConfig, OmegaConf

from router_model.config import Catalog
from tests.helpers import compose_config, tmp_paths

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def cfg() -> DictConfig:
    return compose_config()


@pytest.fixture(scope="session")
def catalog(cfg: DictConfig) -> Catalog:
    return Catalog.from_config(cfg)


@pytest.fixture(scope="session")
def trained_router(tmp_path_factory):
    """A real simulate -> train run (2,000 courses, the default 10% exploration).

    Returns the composed router_train config (paths point into the temp folder) and the
    TrainResult. Shared by the training, policy, evaluation and serving tests.
    """
    from pipeline.simulate_cli import run_simulate
    from training.train import run_train

    tmp = tmp_path_factory.mktemp("router")
    run_simulate(compose_config("router_simulate", [*tmp_paths(tmp), "simulate.n_courses=2000"]))
    cfg = compose_config("router_train", [*tmp_paths(tmp), "train.lightgbm.n_estimators=150"])
    OmegaConf.resolve(cfg)
    return cfg, run_train(cfg, progress=False)


# Fixtures that train a real model or simulate thousands of courses: a test that uses one
# (directly or through another fixture) is slow, and `make test-fast` skips it.
HEAVY_FIXTURES = {"trained_router", "simulated"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HEAVY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
