"""The Dask client `train.engine=dask` runs on: a cluster object built from config
(`train.dask.cluster`, a `_target_` such as dask_kubernetes' KubeCluster), a running scheduler
at `train.dask.address`, or else a `LocalCluster` on this machine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from router_model.config import check


@dataclass(frozen=True)
class DaskSettings:
    """conf/train `dask:`; see its comments for what each key does."""

    address: str | None
    cluster: Any  # {_target_: ..., settings}: instantiated by hydra, closed after
    n_workers: int
    threads_per_worker: int
    memory_limit: str
    dashboard_address: str | None
    client_rows_max: int
    stats_rows: int

    def __post_init__(self) -> None:
        for name, low in (("n_workers", 1), ("threads_per_worker", 1),
                          ("client_rows_max", 1000), ("stats_rows", 1000)):
            check(getattr(self, name) >= low, f"train.dask.{name}", getattr(self, name),
                  f"must be >= {low}")
        from dask.utils import parse_bytes

        try:
            size = parse_bytes(self.memory_limit)
        except (ValueError, TypeError):
            size = None
        check(size is not None, "train.dask.memory_limit", str(self.memory_limit)[:40],
              "expected a size such as 8GiB or 4000MB")


@contextmanager
def dask_client(settings: DaskSettings) -> Iterator[Any]:
    """A connected `distributed.Client`, closed (with its LocalCluster) on exit."""
    from distributed import Client, LocalCluster

    if settings.cluster:
        from hydra.utils import instantiate

        with instantiate(settings.cluster) as cluster, Client(cluster) as client:
            yield client
        return
    if settings.address:
        try:
            client = Client(settings.address, timeout="30s")
        except (OSError, ValueError) as exc:  # nothing answering, or not an address at all
            raise ConnectionError(f"train.dask.address={settings.address[:200]!r}: no Dask "
                                  f"scheduler answered ({str(exc)[:200]}); start one with "
                                  "`dask scheduler` or leave the address null for a "
                                  "LocalCluster") from None
        with client:
            yield client
        return
    # Without a dashboard the scheduler still serves HTTP (health, metrics); ":0" takes any
    # free port instead of 8787, which another cluster on the machine may hold.
    with LocalCluster(n_workers=settings.n_workers,
                      threads_per_worker=settings.threads_per_worker,
                      memory_limit=settings.memory_limit,
                      dashboard_address=settings.dashboard_address or ":0",
                      scheduler_kwargs={"dashboard": settings.dashboard_address is not None},
                      processes=True) as cluster, Client(cluster) as client:
        yield client
