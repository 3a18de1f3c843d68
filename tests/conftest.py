"""Session fixtures: the default config and catalog, built once."""

from __future__ import annotations

import os

import pytest
from omegaconf import DictConfig

from router_model.config import Catalog, build_catalog
from tests.helpers import compose_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def cfg() -> DictConfig:
    return compose_config()


@pytest.fixture(scope="session")
def catalog(cfg: DictConfig) -> Catalog:
    return build_catalog(cfg)
