"""Session fixtures: the default config and catalog, built once."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from router_model.config import Catalog
from tests.helpers import compose_config, tmp_paths

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
OUTPUT_DIRS = ("data/generated", "artifacts", "reports")


def snapshot_outputs(repo: Path = REPO) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file in the repository's output folders."""
    found = {}
    for folder in OUTPUT_DIRS:
        for path in (repo / folder).rglob("*") if (repo / folder).exists() else ():
            if path.is_file():
                stat = path.stat()
                found[str(path.relative_to(repo))] = (stat.st_size, stat.st_mtime_ns)
    return found


@pytest.fixture(scope="session", autouse=True)
def tests_write_only_under_tmp():
    """Tests write under tmp paths only: the repository's own outputs (a demo's logs, the
    served decision log, artifacts, reports) must be exactly as they were."""
    before = snapshot_outputs()
    yield
    after = snapshot_outputs()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"tests wrote into the repository: {changed[:10]}"


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
    from training.train_cli import train_job

    tmp = tmp_path_factory.mktemp("router")
    run_simulate(compose_config("router_simulate", [*tmp_paths(tmp), "simulate.n_courses=2000"]))
    cfg = compose_config("router_train", [*tmp_paths(tmp), "train.lightgbm.n_estimators=150"])
    OmegaConf.resolve(cfg)
    return cfg, run_train(train_job(cfg), progress=False)


@pytest.fixture(scope="session")
def embedder():
    """The real MiniLM behind the gate and the provider simulator, loaded once. Its memory
    of vectors is shared by the generator tests: a text's vector never depends on which test
    asked first, and the two loop tests replay many of the same synthetic courses."""
    from pipeline.generator.gate import Embedder

    return Embedder()


# Fixtures that train a real model or simulate thousands of courses: a test that uses one
# (directly or through another fixture) is slow, and `make test-fast` skips it.
HEAVY_FIXTURES = {"trained_router", "simulated"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HEAVY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    # Slow tests first (a stable sort): pytest-xdist hands out work in this order, so the
    # long tests start early and short ones fill the end, instead of a minute-long test
    # starting last while the other worker sits idle.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


LOST_GROUPS = pytest.StashKey[list[str]]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Note the tests whose xdist_group `--dist loadgroup` did not keep: pytest 9.2 drops
    the suffix pytest-xdist 3.8 adds to node ids (pytest-xdist#1386), and grouped modules
    then build their fixtures once per worker, minutes of the suite, with no test failing."""
    grouping = getattr(session.config.option, "loadgroup", False)
    session.config.stash[LOST_GROUPS] = [
        item.nodeid for item in session.items
        if grouping and item.get_closest_marker("xdist_group") and "@" not in item.nodeid]


@pytest.fixture(scope="session", autouse=True)
def xdist_groups_hold(request: pytest.FixtureRequest) -> None:
    """Warn about lost groups from a fixture, not from the collection hook: under
    `-W error` a test then fails with the message instead of pytest-xdist crashing."""
    lost = request.config.stash.get(LOST_GROUPS, [])
    if lost:
        warnings.warn(pytest.PytestWarning(
            f"--dist loadgroup ignored the xdist_group of {len(lost)} tests (e.g. {lost[0]}):"
            " this pytest and pytest-xdist do not group (pytest-xdist#1386); see the pytest"
            " pin in pyproject.toml"), stacklevel=1)
