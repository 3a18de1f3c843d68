"""Typed views of the hydra config: tiers, gate and fields.

Every job builds these objects from its composed config, so the rest of the code works with
checked, named attributes instead of raw dictionaries, and a bad config fails at start-up with
the offending key named.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The hydra config tree. Entry points are installed in editable mode from the checkout, so the
# tree sits beside the packages; an absolute path keeps hydra from treating it as a module.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


class ConfigError(ValueError):
    """A config value is missing or out of range; the message names the key and the value."""


def _require(cfg: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in cfg or cfg[key] is None:
        raise ConfigError(f"{where}.{key} is missing; add it to the config (see conf/{where})")
    return cfg[key]


@dataclass(frozen=True)
class Tier:
    """One callable model: where it lives, what it costs and how fast it is."""

    name: str
    model_id: str
    provider: str
    base_url: str
    api_key_env: str
    price_in_per_m: float
    price_out_per_m: float
    context_window: int
    ladder_rank: int | None
    first_token_s: float
    output_tokens_per_s: float

    def call_cost(self, prompt_tokens: Any, completion_tokens: Any) -> Any:
        """USD for one call; works on scalars and numpy arrays alike."""
        prompt_usd = prompt_tokens * self.price_in_per_m
        return (prompt_usd + completion_tokens * self.price_out_per_m) / 1e6

    def call_latency_s(self, completion_tokens: Any) -> Any:
        return self.first_token_s + completion_tokens / self.output_tokens_per_s


@dataclass(frozen=True)
class Gate:
    """The quality gate and the rule ladder's triggers from the seed note."""

    pass_threshold: float
    severe_threshold: float
    retries_per_tier: int
    context_overflow_tokens: int
    overflow_tier: str
    validation_tier: str
    validation_prompt_overhead_tokens: int
    validation_output_tokens: int
    embedding_price_per_m: float


@dataclass(frozen=True)
class FieldSpec:
    """A Stage-5 field: its phase, impact score and the seed's static tier."""

    name: str
    phase: int
    impact: int
    static_tier: str
    kind: str
    batch: bool


@dataclass(frozen=True)
class Catalog:
    """Tiers, gate and fields together, with the lookups every job needs."""

    tiers: dict[str, Tier]
    gate: Gate
    fields: dict[str, FieldSpec]

    @property
    def ladder(self) -> list[str]:
        """Ladder tiers ordered cheap -> premium."""
        ranked = [t for t in self.tiers.values() if t.ladder_rank is not None]
        return [t.name for t in sorted(ranked, key=lambda t: t.ladder_rank)]

    @property
    def tier_names(self) -> list[str]:
        """Ladder tiers first, then the overflow tier: the column order of outcome arrays."""
        return [*self.ladder, self.gate.overflow_tier]

    @property
    def premium(self) -> str:
        return self.ladder[-1]

    def tier_index(self, name: str) -> int:
        return self.tier_names.index(name)

    def gate_cost(self, completion_tokens: Any) -> Any:
        """USD the gate spends judging one attempt: validation call plus embedding."""
        g = self.gate
        validator = self.tiers[g.validation_tier]
        prompt = completion_tokens + g.validation_prompt_overhead_tokens
        embed = completion_tokens * g.embedding_price_per_m / 1e6
        return validator.call_cost(prompt, g.validation_output_tokens) + embed

    def gate_latency_s(self) -> float:
        g = self.gate
        return float(self.tiers[g.validation_tier].call_latency_s(g.validation_output_tokens))


def build_catalog(cfg: Mapping[str, Any]) -> Catalog:
    """Build and check the catalog from a composed config (needs `tiers`, `gate`, `fields`)."""
    tiers_cfg = _require(cfg, "tiers", "root")
    tiers: dict[str, Tier] = {}
    for name, t in tiers_cfg.items():
        rank = t.get("ladder_rank")
        tier = Tier(
            name=str(name),
            model_id=str(_require(t, "model_id", f"tiers.{name}")),
            provider=str(_require(t, "provider", f"tiers.{name}")),
            base_url=str(_require(t, "base_url", f"tiers.{name}")),
            api_key_env=str(_require(t, "api_key_env", f"tiers.{name}")),
            price_in_per_m=float(_require(t, "price_in_per_m", f"tiers.{name}")),
            price_out_per_m=float(_require(t, "price_out_per_m", f"tiers.{name}")),
            context_window=int(_require(t, "context_window", f"tiers.{name}")),
            ladder_rank=None if rank is None else int(rank),
            first_token_s=float(_require(t, "first_token_s", f"tiers.{name}")),
            output_tokens_per_s=float(_require(t, "output_tokens_per_s", f"tiers.{name}")),
        )
        for key in ("price_in_per_m", "price_out_per_m"):
            if getattr(tier, key) < 0:
                raise ConfigError(f"tiers.{name}.{key}={getattr(tier, key)} must be >= 0")
        if tier.output_tokens_per_s <= 0:
            raise ConfigError(f"tiers.{name}.output_tokens_per_s must be > 0")
        tiers[tier.name] = tier

    g = _require(cfg, "gate", "root")
    gate = Gate(
        pass_threshold=float(g["pass_threshold"]),
        severe_threshold=float(g["severe_threshold"]),
        retries_per_tier=int(g["retries_per_tier"]),
        context_overflow_tokens=int(g["context_overflow_tokens"]),
        overflow_tier=str(g["overflow_tier"]),
        validation_tier=str(g["validation_tier"]),
        validation_prompt_overhead_tokens=int(g["validation_prompt_overhead_tokens"]),
        validation_output_tokens=int(g["validation_output_tokens"]),
        embedding_price_per_m=float(g["embedding_price_per_m"]),
    )
    if not 0.0 <= gate.severe_threshold <= gate.pass_threshold <= 1.0:
        raise ConfigError(
            f"gate thresholds must satisfy 0 <= severe_threshold ({gate.severe_threshold}) "
            f"<= pass_threshold ({gate.pass_threshold}) <= 1"
        )
    if gate.retries_per_tier < 0:
        raise ConfigError(f"gate.retries_per_tier={gate.retries_per_tier} must be >= 0")
    for key in ("overflow_tier", "validation_tier"):
        if getattr(gate, key) not in tiers:
            raise ConfigError(f"gate.{key}={getattr(gate, key)!r} is not a tier in conf/tiers")

    fields: dict[str, FieldSpec] = {}
    for name, f in _require(cfg, "fields", "root").items():
        spec = FieldSpec(
            name=str(name),
            phase=int(f["phase"]),
            impact=int(f["impact"]),
            static_tier=str(f["static_tier"]),
            kind=str(f["kind"]),
            batch=bool(f.get("batch", False)),
        )
        if spec.static_tier not in tiers:
            raise ConfigError(f"fields.{name}.static_tier={spec.static_tier!r} is not a tier")
        if not 1 <= spec.impact <= 10:
            raise ConfigError(f"fields.{name}.impact={spec.impact} must be in 1..10")
        fields[spec.name] = spec

    catalog = Catalog(tiers=tiers, gate=gate, fields=fields)
    if len(catalog.ladder) < 2:
        raise ConfigError("conf/tiers needs at least two tiers with a ladder_rank")
    if gate.overflow_tier in catalog.ladder:
        raise ConfigError(f"gate.overflow_tier={gate.overflow_tier!r} must be off-ladder")
    return catalog
