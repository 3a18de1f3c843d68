"""What router-train (and the commands that train: seeds, coverage, trials) hand the
training code: the typed settings of one training run, built once by the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router_model.config import Catalog, Paths, check
from training.fitting import TrainSettings
from training.router_settings import RouterSettings


@dataclass(frozen=True)
class DataSettings:
    """`data` in router_train: a prepared examples file instead of the logs (paths.logs),
    and the share of courses left out for router-promote to judge on."""

    examples: str | None
    holdout_share: float | None

    def __post_init__(self) -> None:
        if self.holdout_share is not None:
            check(0.0 <= self.holdout_share <= 1.0, "data.holdout_share", self.holdout_share,
                  "must be in [0, 1] (or null: train on every course)")


@dataclass(frozen=True)
class TrainJob:
    """Everything router-train needs, typed once by its CLI; `record` is the composed config
    as plain data, saved in the artifact's manifest (router-promote reads it back)."""

    catalog: Catalog
    paths: Paths
    router: RouterSettings
    train: TrainSettings
    data: DataSettings
    reports_dir: str
    record: dict[str, Any]
