"""router-benchmark's settings: the command's own (conf/router_benchmark.yaml), each
benchmark's (conf/benchmark/*.yaml), and the job the CLI bundles them into, typed once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router_model.config import GateConfig, check
from router_model.decide.settings import PolicySettings
from training.fitting import TrainSettings

EMBEDDED_TEXT = ("head", "tail", "chunks")
SPLIT_KINDS = ("given", "kfold")


@dataclass(frozen=True)
class EmbeddingSettings:
    """What of each prompt MiniLM embeds (`embedding` in conf/router_benchmark.yaml)."""

    text: str
    window_tokens: int
    collapse_warn_share: float

    def __post_init__(self) -> None:
        check(self.text in EMBEDDED_TEXT, "embedding.text", self.text,
              f"expected one of {EMBEDDED_TEXT}")
        check(self.window_tokens >= 8, "embedding.window_tokens", self.window_tokens,
              "must be >= 8")


@dataclass(frozen=True)
class OperatingPointSettings:
    """How each router's knob is chosen on training prompts (`operating_point`)."""

    quality_shares: list[float]
    inner_folds: int

    def __post_init__(self) -> None:
        check(all(0.0 < s <= 1.0 for s in self.quality_shares), "operating_point.quality_shares",
              self.quality_shares, "each must be in (0, 1]")
        check(self.inner_folds >= 2, "operating_point.inner_folds", self.inner_folds,
              "must be >= 2")


@dataclass(frozen=True)
class BenchmarkSettings:
    """conf/router_benchmark.yaml (its comments say what each key does). `spec_defaults`
    holds what a benchmark file may leave out."""

    run: list[str]
    benchmark_dirs: list[str]
    public_data: str
    max_prompts: int | None
    bootstrap: int
    learned_routers: list[str]
    embedding: EmbeddingSettings
    operating_point: OperatingPointSettings
    gate_error_rates: list[float]
    ladder_lam_sweep: list[float]
    seed: int
    n_jobs: int
    spec_defaults: dict[str, Any]
    reports_dir: str

    def __post_init__(self) -> None:
        check(self.bootstrap >= 1, "bootstrap", self.bootstrap, "must be >= 1")
        check(self.max_prompts is None or self.max_prompts >= 1, "max_prompts",
              self.max_prompts, "must be >= 1 (or null for every prompt)")
        check(all(0.0 <= r <= 1.0 for r in self.gate_error_rates), "gate_error_rates",
              self.gate_error_rates, "each must be in [0, 1]")
        check(self.n_jobs >= 1, "n_jobs", self.n_jobs, "must be >= 1")


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark (conf/benchmark/<name>.yaml): the outcome table, the ladder of models
    (cheap -> premium, with prices unless the table records costs), the gate, the filters,
    how turns group into questions, and the split protocol."""

    name: str
    data: str
    include: dict[str, list[Any]]
    exclude_contaminated: bool
    family: str
    models: list[dict[str, Any]]
    default_completion_tokens: float
    gate: dict[str, Any]
    split: dict[str, Any]
    published: dict[str, Any]
    group: dict[str, Any] | None

    def __post_init__(self) -> None:
        where = f"benchmark {self.name}"
        check(len(self.models) >= 2 and all("name" in m for m in self.models),
              f"{where}: models", self.models, "needs at least two models, each with a name")
        check("pass_score" in self.gate, f"{where}: gate", self.gate, "needs a pass_score")
        check(self.split.get("kind") in SPLIT_KINDS, f"{where}: split.kind",
              self.split.get("kind"), f"expected one of {SPLIT_KINDS}")
        check(not self.group or "pattern" in self.group, f"{where}: group", self.group,
              "needs a pattern (or null: one prompt per unit)")


@dataclass(frozen=True)
class BenchmarkJob:
    """Everything router-benchmark needs, typed once by its CLI: its settings, conf/gate,
    the policy, conf/train (the LightGBM routers'), the router registry, the embedding cache
    and the specs found for `run`."""

    settings: BenchmarkSettings
    gate: GateConfig
    policy: PolicySettings
    train: TrainSettings
    routers: dict[str, Any]
    cache_dir: str | None
    specs: list[BenchmarkSpec]
