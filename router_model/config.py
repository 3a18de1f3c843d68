"""Typed settings: the catalog (tiers, gate, fields), paths, and how YAML becomes objects.

Every config group is read into a dataclass (a hydra structured config) once, in the command
that composed it, and the objects are passed down: below the commands no function reads a
raw config. The dataclasses carry no defaults: defaults live once, in the YAML under conf/,
and `yaml_node` reads them where no command composed a config (a test, a notebook). Merging
a node onto its dataclass (`typed`) checks names and types with the full key; each
dataclass's `__post_init__` checks ranges and names the key, the value and how to fix it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

# The hydra config tree. Entry points are installed in editable mode from the checkout, so the
# tree sits beside the packages; an absolute path keeps hydra from treating it as a module.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


class ConfigError(ValueError):
    """A config value is missing or out of range; the message names the key and the value."""


def check(ok: bool, where: str, value: Any, rule: str) -> None:
    """Raise a ConfigError naming `where=value` and the rule it breaks unless `ok`."""
    if not ok:
        raise ConfigError(f"{where}={value!r}: {rule}")


MAX_TOKENS_PARAMS = ("max_completion_tokens", "max_tokens")
REASONING_EFFORTS = ("minimal", "low", "medium", "high")
RESPONSE_FORMATS = ("json_schema", "json_object", "none")


@dataclass(frozen=True)
class Deployment:
    """Another deployment of a tier (`tiers.<tier>.deployments.<name>`): the same model at a
    second base URL or provider, tried when the first one keeps failing."""

    provider: str
    base_url: str
    api_key_env: str
    model_id: str | None  # None: the tier's model_id


@dataclass(frozen=True)
class TierRequest:
    """`tiers.<tier>.request`: what a call to this tier sends besides the prompt."""

    reasoning_effort: str | None  # reasoning models (gpt-oss, Gemini Flash); None: not sent
    max_tokens_param: str  # max_completion_tokens (current API) or max_tokens (older servers)
    response_format: str | None  # json_schema | json_object | none; None: provider's setting
    extra_body: dict[str, Any]  # sent as is (e.g. OpenRouter's `provider` preferences)

    def check(self, where: str) -> None:
        """Ranges, named under `where` (the tier's key: `tiers.<tier>.request`)."""
        check(self.reasoning_effort is None or self.reasoning_effort in REASONING_EFFORTS,
              f"{where}.reasoning_effort", self.reasoning_effort,
              f"must be one of {REASONING_EFFORTS} or null")
        check(self.max_tokens_param in MAX_TOKENS_PARAMS, f"{where}.max_tokens_param",
              self.max_tokens_param, f"must be one of {MAX_TOKENS_PARAMS}")
        check(self.response_format is None or self.response_format in RESPONSE_FORMATS,
              f"{where}.response_format", self.response_format,
              f"must be one of {RESPONSE_FORMATS} or null")


@dataclass(frozen=True)
class Tier:
    """One callable model: where it lives, what it costs and how fast it is."""

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
    deployments: dict[str, Deployment]  # more deployments of this tier, tried in order
    request: TierRequest
    name: str = ""  # the key in conf/tiers, filled in by the catalog

    def __post_init__(self) -> None:
        where = f"tiers.{self.name}"
        for key in ("price_in_per_m", "price_out_per_m", "first_token_s"):
            check(getattr(self, key) >= 0, f"{where}.{key}", getattr(self, key), "must be >= 0")
        check(self.output_tokens_per_s > 0, f"{where}.output_tokens_per_s",
              self.output_tokens_per_s, "must be > 0")
        check(self.context_window > 0, f"{where}.context_window", self.context_window,
              "must be > 0")
        self.request.check(f"{where}.request")

    def call_cost(self, prompt_tokens: Any, completion_tokens: Any) -> Any:
        """USD for one call; works on scalars and numpy arrays alike."""
        prompt_usd = prompt_tokens * self.price_in_per_m
        return (prompt_usd + completion_tokens * self.price_out_per_m) / 1e6

    def call_latency_s(self, completion_tokens: Any) -> Any:
        return self.first_token_s + completion_tokens / self.output_tokens_per_s


@dataclass  # not frozen: hydra composes conf/gate onto it (a frozen schema is read-only)
class GateConfig:
    """The quality gate and the rule ladder's triggers from the seed note (`conf/gate`)."""

    pass_threshold: float
    severe_threshold: float
    retries_per_tier: int
    context_overflow_tokens: int
    overflow_tier: str
    validation_tier: str
    validation_prompt_overhead_tokens: int
    validation_output_tokens: int
    embedding_price_per_m: float
    # What scores an output (issue 27): the scorer, the guards that fail an output whatever
    # it scores, the fitted calibration maps (relative to conf/gate/), each scorer's settings.
    scorer: str
    guards: list[str]
    calibration_map: str | None
    scorers: dict[str, Any]

    def __post_init__(self) -> None:
        check(self.scorer in self.scorers, "gate.scorer", self.scorer,
              f"must be one of gate.scorers {sorted(self.scorers)}")
        check(0.0 <= self.severe_threshold <= self.pass_threshold <= 1.0,
              "gate.severe_threshold, gate.pass_threshold",
              (self.severe_threshold, self.pass_threshold),
              "need 0 <= severe_threshold <= pass_threshold <= 1")
        check(self.retries_per_tier >= 0, "gate.retries_per_tier", self.retries_per_tier,
              "must be >= 0")
        check(self.context_overflow_tokens > 0, "gate.context_overflow_tokens",
              self.context_overflow_tokens, "must be > 0")


@dataclass(frozen=True)
class FieldSpec:
    """A Stage-5 field: phase, impact score, the seed's static tier, optional own threshold,
    and its token figures (read by the log world model and the generator alike)."""

    phase: int
    impact: int
    static_tier: str
    kind: str
    prompt_tokens: int  # median prompt, before the batch and the source material
    output_tokens: int  # median output per item
    context_share: float  # share of the course's source material in the prompt
    batch: bool = False
    pass_threshold: float | None = None  # None: the gate's pass_threshold
    # The quality floor: the field's expected true pass may fall at most this far below
    # the seed's rule start's (None: no floor). Held by a per-field dial at training.
    floor_tolerance: float | None = None
    name: str = ""  # the key in conf/fields, filled in by the catalog

    def __post_init__(self) -> None:
        where = f"fields.{self.name}"
        check(1 <= self.impact <= 10, f"{where}.impact", self.impact, "must be in 1..10")
        check(1 <= self.phase <= 5, f"{where}.phase", self.phase, "must be in 1..5")
        check(0.0 <= self.context_share <= 1.0, f"{where}.context_share", self.context_share,
              "must be in [0, 1]")
        if self.pass_threshold is not None:
            check(0.0 <= self.pass_threshold <= 1.0, f"{where}.pass_threshold",
                  self.pass_threshold, "must be in [0, 1] (or null for the gate's)")
        if self.floor_tolerance is not None:
            check(0.0 <= self.floor_tolerance <= 1.0, f"{where}.floor_tolerance",
                  self.floor_tolerance, "must be in [0, 1] (or null: no quality floor)")


ConfigStore.instance().store(group="gate", name="gate_schema", node=GateConfig)


def typed(schema: type, node: Any, where: str, **extra: Any) -> Any:
    """Merge a config node onto its dataclass schema and build the object.

    OmegaConf checks names and types (an unknown key or a string where a number belongs fails
    with the full key); the dataclasses check ranges. OmegaConf marks a frozen schema's
    nodes read-only, so it cannot merge into a frozen dataclass nested in another: each
    nested one (directly, or as the values of a dict) is built first, under its full key.
    `extra` are fields given ready-made.
    """
    values = plain(node)
    values = dict(values) if values is not None else {}
    hints = get_type_hints(schema)
    ready: dict[str, Any] = {}
    for f in fields(schema):
        if f.name in extra or f.name not in values:  # a missing key is named below
            continue
        kind, value = hints[f.name], values[f.name]
        if is_dataclass(kind):
            ready[f.name] = typed(kind, value, f"{where}.{f.name}")
        elif get_origin(kind) is dict and is_dataclass(get_args(kind)[1]):
            ready[f.name] = {str(k): typed(get_args(kind)[1], v, f"{where}.{f.name}.{k}")
                             for k, v in (value or {}).items()}
    rest = {k: v for k, v in values.items() if k not in ready and k not in extra}
    return _typed_flat(schema, rest, where, **ready, **extra)


def _typed_flat(schema: type, node: Any, where: str, **extra: Any) -> Any:
    """`typed` once the nested schemas are built: merge, check, construct."""
    group = where.split(".")[0]
    try:
        if OmegaConf.is_config(node):  # resolve ${...} against its own root first
            node = OmegaConf.to_container(node, resolve=True)
        merged = OmegaConf.merge(OmegaConf.structured(schema), node if node is not None else {})
        missing = [f.name for f in fields(schema)
                   if f.name not in extra and OmegaConf.is_missing(merged, f.name)]
        if missing:
            raise ConfigError(f"{where}.{missing[0]} is missing; add it (see conf/{group})")
        if extra:
            values = OmegaConf.to_container(merged, resolve=True)
            return schema(**{**values, **extra})
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"{where}: {msg}; see conf/{group}") from None


def yaml_node(group: str, key: str | None = None, option: str = "default") -> Any:
    """What `conf/<group>/<option>.yaml` says (under `key`): the defaults, for code that runs
    without a composed config. Interpolations (${...}) are left unresolved."""
    node = OmegaConf.load(Path(CONF_DIR) / group / f"{option}.yaml")
    node.pop("defaults", None)
    return node if key is None else node[key]


def yaml_defaults(schema: type, group: str, key: str | None = None, **changes: Any) -> Any:
    """`schema` as conf/<group>/default.yaml (under `key`) sets it, with `changes`."""
    node = OmegaConf.to_container(yaml_node(group, key))
    return typed(schema, {**node, **changes}, f"{group}.{key}" if key else group)


def plain(node: Any) -> Any:
    """A settings object or config node as plain dicts and lists (for a JSON record)."""
    if is_dataclass(node):
        return OmegaConf.to_container(OmegaConf.structured(node), resolve=True)
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


@dataclass(frozen=True)
class LogReading:
    """`paths.log_reading`: what one log row and one file may hold, the window timestamps
    must fall in, and the URL schemes that may be read (router_model/logs/read_files.py)."""

    max_keys: int
    max_columns: int
    max_value_chars: int
    max_row_bytes: int
    earliest: str  # ISO date or time, UTC
    max_future_days: float
    url_schemes: list[str]

    def __post_init__(self) -> None:
        for name in ("max_keys", "max_columns", "max_value_chars", "max_row_bytes"):
            check(getattr(self, name) >= 1, f"paths.log_reading.{name}", getattr(self, name),
                  "must be >= 1")
        check(self.max_future_days >= 0, "paths.log_reading.max_future_days",
              self.max_future_days, "must be >= 0")


@dataclass(frozen=True)
class Paths:
    """`paths` in config: where every job reads and writes (relative to the working
    directory). `logs` is the one name of the attempt-log location."""

    data_dir: str
    logs: Any  # a file, a folder (hive dataset), a glob, a URL, or a list of them
    log_reading: LogReading
    tasks: str
    outcomes: str
    quarantine: str
    simulate_summary: str
    artifacts_dir: str
    reports_dir: str
    cache_dir: str


@dataclass(frozen=True)
class Catalog:
    """Tiers, gate and fields together, with the lookups every job needs."""

    tiers: dict[str, Tier]
    gate: GateConfig
    fields: dict[str, FieldSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check(len(self.ladder) >= 2, "tiers", sorted(self.tiers),
              "conf/tiers needs at least two tiers with a ladder_rank")
        for key in ("overflow_tier", "validation_tier"):
            check(getattr(self.gate, key) in self.tiers, f"gate.{key}",
                  getattr(self.gate, key), f"is not a tier in conf/tiers {sorted(self.tiers)}")
        check(self.gate.overflow_tier not in self.ladder, "gate.overflow_tier",
              self.gate.overflow_tier, "must be off the ladder (ladder_rank: null)")
        for name, spec in self.fields.items():
            check(spec.static_tier in self.tiers, f"fields.{name}.static_tier",
                  spec.static_tier, f"is not a tier in conf/tiers {sorted(self.tiers)}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Catalog:
        """Build and check the catalog from a composed config (`tiers`, `gate`, `fields`)."""
        for key in ("tiers", "gate", "fields"):
            if cfg.get(key) is None:
                raise ConfigError(f"{key} is missing from the config; compose conf/{key}")
        tiers = {str(n): typed(Tier, t, f"tiers.{n}", name=str(n))
                 for n, t in cfg["tiers"].items()}
        specs = {str(n): typed(FieldSpec, f, f"fields.{n}", name=str(n))
                 for n, f in cfg["fields"].items()}
        return cls(tiers=tiers, gate=typed(GateConfig, cfg["gate"], "gate"), fields=specs)

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
