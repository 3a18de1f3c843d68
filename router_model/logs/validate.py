"""The attempt-log contract as column rules, and the validator that applies them.

The rules are derived from the pydantic `AttemptRecord` (`router_model.contract`), so the
record, the Arrow schema (`attempts.arrow_schema`) and this column-wise validator can never
disagree. The validator coerces a whole flat frame at once and gives every row one reason
("" = valid): pydantic row by row is far too slow for million-row logs.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import annotated_types
import numpy as np
import pandas as pd

from router_model.contract import Analysis, AttemptRecord


@dataclass(frozen=True)
class ColumnRule:
    """What the contract demands of one flat column."""

    name: str
    kind: str  # "str" | "int" | "float" | "bool" | "datetime" | "literal"
    required: bool
    choices: tuple[Any, ...] = ()
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    min_length: int | None = None


def _unwrap(annotation: Any) -> tuple[Any, bool, list[Any]]:
    """Strip Optional/Annotated; return (base type, nullable, constraint metadata)."""
    nullable = False
    metadata: list[Any] = []
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation, *extra = typing.get_args(annotation)
            for m in extra:
                metadata.extend(getattr(m, "metadata", [m]))
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            nullable = nullable or len(args) < len(typing.get_args(annotation))
            annotation = args[0]
        else:
            return annotation, nullable, metadata


def _rule(name: str, info: Any) -> ColumnRule:
    base, nullable, metadata = _unwrap(info.annotation)
    metadata = [*metadata, *info.metadata]
    bounds: dict[str, Any] = {}
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            bounds["ge"] = m.ge
        elif isinstance(m, annotated_types.Gt):
            bounds["gt"] = m.gt
        elif isinstance(m, annotated_types.Le):
            bounds["le"] = m.le
        elif isinstance(m, annotated_types.MinLen):
            bounds["min_length"] = m.min_length
    if typing.get_origin(base) is Literal:
        kind, choices = "literal", typing.get_args(base)
    else:
        kind = {str: "str", int: "int", float: "float", bool: "bool", datetime: "datetime"}[base]
        choices = ()
    required = info.is_required() or (not nullable and info.default is not None)
    return ColumnRule(name=name, kind=kind, required=required and not nullable, choices=choices,
                      **bounds)


def column_rules() -> list[ColumnRule]:
    """Flat column rules: record fields plus `analysis.<key>` for the known analysis keys."""
    rules = [_rule(n, f) for n, f in AttemptRecord.model_fields.items() if n != "analysis"]
    rules += [_rule(f"analysis.{n}", f) for n, f in Analysis.model_fields.items()]
    return rules


KNOWN_COLUMNS = [r.name for r in column_rules()]




INT64_LIMIT = 2.0 ** 63
ISO_8601 = (r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?"
            r"(?:Z|z|[+-]\d{2}(?::?\d{2})?)?")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


Failures = list[tuple[np.ndarray, Any]]  # (mask of failing rows, message for a value)


def _check_column(frame: pd.DataFrame, rule: ColumnRule) -> tuple[pd.Series, Failures]:
    """Coerce one column to its type; return it and (mask, message-fn) failures."""
    raw = frame[rule.name] if rule.name in frame.columns else pd.Series(
        [None] * len(frame), index=frame.index, dtype=object)
    isnull = raw.isna().to_numpy()
    failures: Failures = []
    if rule.required:
        failures.append((isnull, lambda v, r=rule: f"{r.name} is missing"))
    check = {"int": _check_number, "float": _check_number, "bool": _check_bool,
             "datetime": _check_datetime, "literal": _check_literal}.get(rule.kind, _check_str)
    return check(raw, isnull, rule, failures)


def _check_number(raw: pd.Series, isnull: np.ndarray, rule: ColumnRule, failures: Failures
                  ) -> tuple[pd.Series, Failures]:
    if raw.dtype == bool or raw.dtype == object:
        is_bool = raw.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy()
        failures.append((is_bool, lambda v, r=rule: f"{r.name}={_short(v)}: expected a number"))
        raw = raw.where(~is_bool, None)
    num = pd.to_numeric(raw, errors="coerce")
    bad_type = num.isna().to_numpy() & ~isnull
    failures.append((bad_type, lambda v, r=rule: f"{r.name}={_short(v)}: expected a number"))
    if rule.kind == "int":
        frac = (num.notna() & (num != np.floor(num))).to_numpy()
        failures.append((frac, lambda v, r=rule:
                         f"{r.name}={_short(v)}: expected a whole number"))
    numv = num.to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        _number_bounds(numv, rule, failures)
    if rule.kind == "int" and rule.required:
        castable = np.isfinite(numv) & (np.abs(numv) < INT64_LIMIT)
        return pd.Series(np.where(castable, numv, 0.0), index=raw.index).round().astype(
            "int64"), failures
    return pd.Series(numv, index=raw.index), failures


def _number_bounds(numv: np.ndarray, rule: ColumnRule, failures: Failures) -> None:
    """Infinities, integers past int64, and the contract's bounds."""
    infinite = np.isinf(numv)
    failures.append((infinite, lambda v, r=rule: f"{r.name}={_short(v)}: not a finite number"))
    if rule.kind == "int":
        huge = ~infinite & (np.abs(numv) >= INT64_LIMIT)
        failures.append((huge, lambda v, r=rule: (
            f"{r.name}={_short(v)}: outside the 64-bit integer range")))
    if rule.ge is not None:
        failures.append((numv < rule.ge,
                         lambda v, r=rule: f"{r.name}={_short(v)}: must be >= {r.ge}"))
    if rule.gt is not None:
        failures.append((numv <= rule.gt,
                         lambda v, r=rule: f"{r.name}={_short(v)}: must be > {r.gt}"))
    if rule.le is not None:
        failures.append((numv > rule.le,
                         lambda v, r=rule: f"{r.name}={_short(v)}: must be <= {r.le}"))


def _check_bool(raw: pd.Series, isnull: np.ndarray, rule: ColumnRule, failures: Failures
                ) -> tuple[pd.Series, Failures]:
    ok = (np.ones(len(raw), dtype=bool) if pd.api.types.is_bool_dtype(raw)
          else raw.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy())
    failures.append((~ok & ~isnull, lambda v, r=rule:
                     f"{r.name}={_short(v)}: expected true/false"))
    if not rule.required:  # optional verdicts keep their gaps
        return raw.astype(object).where(ok & ~isnull, None).astype("boolean"), failures
    return raw.where(ok, False).astype(bool), failures


def _check_datetime(raw: pd.Series, isnull: np.ndarray, rule: ColumnRule, failures: Failures
                    ) -> tuple[pd.Series, Failures]:
    if pd.api.types.is_datetime64_any_dtype(raw):
        return pd.to_datetime(raw, utc=True), failures
    # Text in ISO-8601 only: pandas would also read "now", "today" or 5 as a time.
    text = raw.where(raw.map(lambda v: isinstance(v, str)), None) \
        if raw.dtype == object or not pd.api.types.is_string_dtype(raw) else raw
    iso = text.astype("string").str.fullmatch(ISO_8601).fillna(False).to_numpy(dtype=bool)
    ts = pd.to_datetime(text.where(iso, None), errors="coerce", utc=True, format="ISO8601")
    bad = (~iso | ts.isna().to_numpy()) & ~isnull
    failures.append((bad, lambda v, r=rule: (
        f"{r.name}={_short(v)}: expected an ISO-8601 time such as 2025-09-01T12:00:00Z")))
    return ts.where(~bad, pd.NaT), failures


def _check_literal(raw: pd.Series, isnull: np.ndarray, rule: ColumnRule, failures: Failures
                   ) -> tuple[pd.Series, Failures]:
    ok = raw.isin(list(set(rule.choices))).to_numpy()
    failures.append((~ok & ~isnull, lambda v, r=rule: (
        f"{r.name}={_short(v)}: expected one of {sorted(map(str, r.choices))}")))
    return raw, failures


def _check_str(raw: pd.Series, isnull: np.ndarray, rule: ColumnRule, failures: Failures
               ) -> tuple[pd.Series, Failures]:
    # a string-typed column (Parquet) needs no per-value check; JSON objects do
    is_str = (~isnull if pd.api.types.is_string_dtype(raw) and raw.dtype != object
              else raw.map(lambda v: isinstance(v, str)).to_numpy())
    failures.append((~is_str & ~isnull, lambda v, r=rule:
                     f"{r.name}={_short(v)}: expected a string"))
    if rule.min_length:
        empty = (raw.astype("string").str.len() < rule.min_length).fillna(False).to_numpy()
        failures.append((empty & is_str, lambda v, r=rule: f"{r.name} is empty"))
    if pd.api.types.is_string_dtype(raw) and raw.dtype != object and not isnull.all():
        return raw, failures  # already text with missing values as NA (Parquet)
    return raw.astype(object).where(~isnull, None), failures


def validate_frame(frame: pd.DataFrame, *, known_fields: Iterable[str] | None = None,
                   known_tiers: Iterable[str] | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Coerce a flat frame to contract types; return it with one reason ("" = valid) per row."""
    n = len(frame)
    reasons = np.full(n, "", dtype=object)

    def add(mask: np.ndarray, message: Any, values: pd.Series | None) -> None:
        idx = np.flatnonzero(mask)
        for i in idx:
            v = json_value(values.iloc[i]) if values is not None else None
            msg = message(v)
            reasons[i] = msg if not reasons[i] else f"{reasons[i]}; {msg}"

    out = {}
    for rule in column_rules():
        coerced, failures = _check_column(frame, rule)
        original = frame[rule.name] if rule.name in frame.columns else None
        for mask, message in failures:
            add(mask, message, original)
        # Typed columns stay Series on frame's index (no round trip through numpy objects);
        # object columns go through numpy so the frame infers their dtype as before.
        out[rule.name] = coerced.to_numpy() if coerced.dtype == object else coerced

    unknown = [c for c in frame.columns
               if c not in KNOWN_COLUMNS and not c.startswith("analysis.")]
    for c in unknown:
        present = frame[c].notna().to_numpy()
        add(present, lambda v, c=c: f"unknown column {c!r} (not in the attempt-log contract)",
            frame[c])
    if known_fields is not None:
        allowed = set(known_fields)
        field_ = frame.get("field", pd.Series([None] * n, index=frame.index))
        bad = ~field_.isin(allowed).to_numpy() & field_.notna().to_numpy()
        add(bad, lambda v: f"field={_short(v)}: unknown field name (not in conf/fields)",
            field_)
    if known_tiers is not None:
        allowed = set(known_tiers)
        tier = frame.get("tier", pd.Series([None] * n))
        bad = ~tier.isin(allowed).to_numpy() & tier.notna().to_numpy()
        add(bad, lambda v: f"tier={_short(v)}: unknown tier (not in conf/tiers)", tier)
    if "passed" in frame.columns and "schema_valid" in frame.columns:
        incoherent = (out["passed"].astype(bool) & ~out["schema_valid"].astype(bool))
        add(incoherent, lambda v: "passed=true with schema_valid=false", None)

    extras = {c: frame[c].to_numpy() if frame[c].dtype == object else frame[c]
              for c in frame.columns if c.startswith("analysis.") and c not in KNOWN_COLUMNS}
    clean = pd.DataFrame({**out, **extras}, index=frame.index)
    return clean, reasons


def json_value(value: Any) -> Any:
    """numpy/pandas scalars -> JSON-able python values; NaN/NA -> None."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float | np.floating) and np.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value



def join_reasons(first: str, second: str) -> str:
    """Both readers' reasons for one row, each said once."""
    if not first or not second:
        return first or second
    parts = list(dict.fromkeys([*first.split("; "), *second.split("; ")]))
    return "; ".join(parts)


def quarantine_duplicates(frame: pd.DataFrame, origins: list[tuple[str, np.ndarray]]
                           ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One row per (task_id, attempt): an exact copy is quarantined (the first is kept);
    twins that differ in anything are all quarantined, since which one is true is unknown."""
    keys = ["task_id", "attempt"]
    twins = frame.duplicated(subset=keys, keep=False).to_numpy()
    if not twins.any():
        return frame, []
    sources = np.concatenate([np.full(len(rows), name, dtype=object) for name, rows in origins])
    row_numbers = np.concatenate([rows for _, rows in origins])
    candidates = frame.loc[twins]
    versions = candidates.drop_duplicates().groupby(keys).size()
    conflicting = candidates.set_index(keys).index.isin(versions[versions > 1].index)
    copies = candidates.duplicated(keep="first").to_numpy()
    first_at = {}
    for i in np.flatnonzero(twins):
        first_at.setdefault((frame.at[i, "task_id"], frame.at[i, "attempt"]), i)
    drop = np.zeros(len(frame), dtype=bool)
    out = []
    for j, i in enumerate(np.flatnonzero(twins)):
        row = candidates.iloc[j]
        key = (row["task_id"], row["attempt"])
        if conflicting[j]:
            reason = (f"task_id={_short(key[0])} attempt={key[1]} appears more than once with "
                      "different content (e.g. the outcome); all its rows are quarantined")
        elif copies[j]:
            first = first_at[key]
            reason = (f"exact duplicate of task_id={_short(key[0])} attempt={key[1]} "
                      f"({sources[first]} row {row_numbers[first]})")
        else:
            continue
        drop[i] = True
        out.append({"source": sources[i], "row": int(row_numbers[i]), "reason": reason,
                    "record": {k: json_value(v) for k, v in row.items()}})
    return frame.loc[~drop].reset_index(drop=True), out
