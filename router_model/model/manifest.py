"""The artifact manifest's schema: every key the router reads, typed and range-checked.

`manifest.json` is written by `router-train` (`artifact.save_artifact`, with the extra keys of
`training/train.py`'s `save_trained`) and read by serving, evaluation, monitoring and
promotion. A manifest is checked here before anything else reads it, so a missing
`router_version`, a `policy.lam` of "abc" or NaN, `ladder_stats` as a string or a missing
`gate_errors.model.slope` is an `ArtifactError` naming the key, never a 500 later on.

Known keys are type-checked strictly (a number is not a string, a count is not a bool) and
their ranges are checked; keys this router does not know (a later trainer's
`gate_version`, `tiers`, ...) are accepted and ignored, so a newer trainer's
artifact still loads. Where the trainer can legitimately write NaN (a tier without retries
has `retry_pass_rate` NaN), NaN is accepted; nowhere else.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Name = Annotated[str, Field(min_length=1, max_length=200)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
ShareOrNaN = Annotated[float, Field(allow_inf_nan=True)]  # checked in the validator below
Finite = Annotated[float, Field(ge=-1e6, le=1e6)]
Count = Annotated[int, Field(ge=0, le=2**62)]
Tokens = Annotated[float, Field(ge=0.0, le=1e9)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Version = Annotated[str, Field(min_length=1, max_length=128,
                               pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")]


class _Schema(BaseModel):
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore",
                              frozen=True)


class TierStats(_Schema):
    """`ladder_stats.tiers.<tier>` (`LadderCostModel` reads these)."""

    schema_share: Share = 0.0
    severe_share: Share = 0.0
    retry_pass_rate: ShareOrNaN | None = None
    retries_seen: Count | None = None

    @model_validator(mode="after")
    def _shares(self) -> TierStats:
        rate = self.retry_pass_rate
        if rate is not None and rate == rate and not 0.0 <= rate <= 1.0:  # NaN: no retries
            raise ValueError("retry_pass_rate must be in [0, 1] (or NaN: no retry seen)")
        if self.schema_share + self.severe_share > 1.0 + 1e-9:
            raise ValueError("schema_share + severe_share must be <= 1")
        return self


class FalsePassModel(_Schema):
    """`ladder_stats.gate_errors.model`: sigmoid(intercept[tier] + slope * logit(p))."""

    intercept: dict[Name, Finite]
    slope: Finite
    rows: Count | None = None
    bad: Count | None = None


class GateErrors(_Schema):
    tier: dict[Name, Share] = {}
    field_tier: dict[Name, dict[Name, Share]] = {}
    field_tier_point: dict[Name, dict[Name, Share]] = {}
    audited_accepted: Count | None = None
    model: FalsePassModel | None = None


class LadderStats(_Schema):
    tiers: dict[Name, TierStats] = {}
    median_output_tokens: dict[Name, Tokens] = {}
    gate_errors: GateErrors = GateErrors()


class Dial(_Schema):
    """A policy's calibrated dial: `lam` (USD per bad outcome) or `knob` (a threshold)."""

    lam: Annotated[float, Field(ge=0.0, le=1e6)] | None = None
    knob: Share | None = None
    field_lams: dict[Name, Annotated[float, Field(ge=0.0, le=1e6)]] = {}  # quality floors


class Manifest(_Schema):
    """What `manifest.json` must hold (unknown top-level keys are accepted and ignored)."""

    router_version: Version
    schema_version: Literal[2]
    model_kind: Annotated[str, Field(min_length=1, max_length=64)]
    data_hash: Annotated[str, Field(max_length=200)] | None = None
    feature_columns: Annotated[list[Name], Field(max_length=100_000)] | None = None
    library_versions: dict[Annotated[str, Field(max_length=64)],
                           Annotated[str, Field(max_length=64)]]
    files: dict[Annotated[str, Field(max_length=64)], Sha256]
    config: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    ladder_stats: LadderStats = LadderStats()
    lookup: dict[Name, dict[Name, ShareOrNaN]] = {}
    support: dict[Name, dict[Name, Count]] = {}  # rows behind each lookup cell (pessimism)
    reference: dict[str, Any] = {}
    # A dial may be absent (the policy then uses its uncalibrated default), never null.
    policy: Dial = Dial()
    threshold_policy: Dial = Dial()
    lookup_policy: Dial = Dial()
    lookup_threshold: Dial = Dial()

    @model_validator(mode="after")
    def _lookup_rates(self) -> Manifest:
        for field, rates in self.lookup.items():
            for tier, rate in rates.items():
                if rate == rate and not 0.0 <= rate <= 1.0:
                    raise ValueError(f"lookup.{field[:40]}.{tier[:40]}={rate!r} must be in "
                                     "[0, 1]")
        return self


def check_manifest(data: Any) -> Manifest:
    """The parsed manifest, or `ValueError` naming up to five bad keys and why."""
    if not isinstance(data, dict):
        raise ValueError("the manifest is not a JSON object")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p)[:40] for p in err.get("loc", ())) or "manifest"
            problems.append(f"{where}: {str(err.get('msg', 'invalid'))[:120]}")
        more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        raise ValueError("; ".join(problems) + more) from None
