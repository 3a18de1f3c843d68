"""The attempt-log contract as column rules, and the validator that applies them.

The rules are derived from the pydantic `AttemptRecord` (`router_model.contract`), so the
record, the Arrow schema (`attempts.arrow_schema`) and this column-wise validator can never
disagree. The validator coerces a whole flat frame at once and gives every row one reason
("" = valid): pydantic row by row is far too slow for million-row logs.
"""

from __future__ import annotations

import json
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
    if raw.dtype == bool or raw.dtype == object:  # true == 1 for isin; not for the contract
        ok = ok & ~raw.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
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


class _Reasons:
    """One reason per row ("" = valid), each failure appended with "; "."""

    def __init__(self, n: int) -> None:
        self.reasons = np.full(n, "", dtype=object)

    def add(self, mask: np.ndarray, message: Any, values: pd.Series | None) -> None:
        for i in np.flatnonzero(mask):
            v = json_value(values.iloc[i]) if values is not None else None
            msg = message(v)
            self.reasons[i] = msg if not self.reasons[i] else f"{self.reasons[i]}; {msg}"


def validate_frame(frame: pd.DataFrame, *, known_fields: Iterable[str] | None = None,
                   known_tiers: Iterable[str] | None = None,
                   window: tuple[pd.Timestamp, pd.Timestamp] | None = None
                   ) -> tuple[pd.DataFrame, np.ndarray]:
    """Coerce a flat frame to contract types; return it with one reason ("" = valid) per row.

    `window`: (earliest, latest) timestamps a row may carry; rows outside it (a row from
    the future included) are quarantined, not just kept from setting anyone's window."""
    found = _Reasons(len(frame))
    out = {}
    for rule in column_rules():
        coerced, failures = _check_column(frame, rule)
        original = frame[rule.name] if rule.name in frame.columns else None
        for mask, message in failures:
            found.add(mask, message, original)
        # Typed columns stay Series on frame's index (no round trip through numpy objects);
        # object columns go through numpy so the frame infers their dtype as before.
        out[rule.name] = coerced.to_numpy() if coerced.dtype == object else coerced
    known = set(KNOWN_COLUMNS)
    flattened = {c: _typed_parent(c, known) for c in frame.columns if c not in known}
    _check_columns(frame, flattened, found)
    if window is not None:
        _check_window(frame, out["timestamp"], window, found)
    _check_vocabulary(frame, known_fields, known_tiers, found)
    if "passed" in frame.columns and "schema_valid" in frame.columns:
        incoherent = (out["passed"].astype(bool) & ~out["schema_valid"].astype(bool))
        found.add(incoherent, lambda v: "passed=true with schema_valid=false", None)
    extras = {c: frame[c].to_numpy() if frame[c].dtype == object else frame[c]
              for c in frame.columns if c.startswith("analysis.") and c not in KNOWN_COLUMNS
              and flattened.get(c) is None}
    for c, values in extras.items():
        if isinstance(values, np.ndarray) and values.dtype == object:
            for mask, message in [*_one_type(c, values), *_storable(c, values, found.reasons)]:
                found.add(mask, message, frame[c])
    return pd.DataFrame({**out, **extras}, index=frame.index), found.reasons


def _check_columns(frame: pd.DataFrame, flattened: dict[str, str | None],
                   found: _Reasons) -> None:
    """Objects where the contract wants a plain value, and columns it does not know."""
    for c, parent in flattened.items():
        if parent is not None:
            found.add(frame[c].notna().to_numpy(), lambda v, p=parent: (
                f"{p}: expected a plain value, got an object"), None)
        elif not c.startswith("analysis."):
            found.add(frame[c].notna().to_numpy(), lambda v, c=c: (
                f"unknown column {c!r} (not in the attempt-log contract)"), frame[c])


def _check_window(frame: pd.DataFrame, stamps: pd.Series,
                  window: tuple[pd.Timestamp, pd.Timestamp], found: _Reasons) -> None:
    earliest, latest = window
    found.add((stamps < earliest).fillna(False).to_numpy(dtype=bool), lambda v: (
        f"timestamp={_short(v)}: before {earliest.isoformat()} (outside the reader's "
        "window)"), frame.get("timestamp"))
    found.add((stamps > latest).fillna(False).to_numpy(dtype=bool), lambda v: (
        f"timestamp={_short(v)}: after {latest.isoformat()} (a row from the future; "
        "outside the reader's window)"), frame.get("timestamp"))


def _check_vocabulary(frame: pd.DataFrame, known_fields: Iterable[str] | None,
                      known_tiers: Iterable[str] | None, found: _Reasons) -> None:
    """Fields and tiers the catalog does not know."""
    n = len(frame)
    if known_fields is not None:
        field_ = frame.get("field", pd.Series([None] * n, index=frame.index))
        bad = ~field_.isin(set(known_fields)).to_numpy() & field_.notna().to_numpy()
        found.add(bad, lambda v: f"field={_short(v)}: unknown field name (not in conf/fields)",
                  field_)
    if known_tiers is not None:
        tier = frame.get("tier", pd.Series([None] * n))
        bad = ~tier.isin(set(known_tiers)).to_numpy() & tier.notna().to_numpy()
        found.add(bad, lambda v: f"tier={_short(v)}: unknown tier (not in conf/tiers)", tier)


def _typed_parent(column: str, known: set[str]) -> str | None:
    """The contract column `column` was flattened out of (`analysis.domain.x` ->
    `analysis.domain`), if any: a JSON object given where a plain value belongs."""
    parts = column.split(".")
    for i in range(len(parts) - 1, 0, -1):
        parent = ".".join(parts[:i])
        if parent in known:
            return parent
    return None


def _json_type(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool | np.bool_):
        return "true/false"
    if isinstance(value, int | float | np.integer | np.floating):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple | np.ndarray):
        kinds = {_json_type(v) for v in value} - {None}
        if len(kinds) > 1 or any("mixed values" in k for k in kinds):
            return "a list of mixed values"
        return f"a list of {kinds.pop()}" if kinds else "an empty list"
    return "an object"


def _one_type(column: str, values: np.ndarray) -> list[tuple[np.ndarray, Any]]:
    """An extra analysis key holds one JSON type over the rows read (nulls aside; an empty
    list fits any list type), so it can be stored and learned from: rows of another type
    than most rows', and lists of mixed values, are quarantined with the reason."""
    kinds = np.array([_json_type(v) for v in values], dtype=object)
    present = np.array([k is not None for k in kinds], dtype=bool)
    if not present.any():
        return []
    typed = present & (kinds != "an empty list") & (kinds != "a list of mixed values")
    names, counts = np.unique(kinds[typed].astype(str), return_counts=True)
    main = str(names[int(np.argmax(counts))]) if len(names) else None
    ok = ~present | (kinds == main) | ((kinds == "an empty list") & (
        main is None or main.startswith("a list")))
    wrong = ~ok
    if not wrong.any():
        return []
    return [(wrong, lambda v, c=column, m=main: (
        f"{c}={_short(v)}: {_json_type(v)}, while the other rows hold {m} (one type per "
        "extra analysis key)" if m and _json_type(v) != "a list of mixed values"
        else f"{c}={_short(v)}: a list of mixed values"))]


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


def _storable(column: str, values: np.ndarray, reasons: np.ndarray
              ) -> list[tuple[np.ndarray, Any]]:
    """The rows still valid must convert to one Arrow column (the examples cache stores
    them): when they do not (objects in lists whose keys disagree on a type, say), the rows
    holding lists or objects are quarantined."""
    import pyarrow as pa

    nested = np.array([isinstance(v, list | tuple | dict | np.ndarray) for v in values])
    keep = (reasons == "") & nested
    if not keep.any():
        return []
    try:
        pa.array(list(values[reasons == ""]), from_pandas=True)
        return []
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        return [(nested, lambda v, c=column: (
            f"{c}={_short(v)}: values of this key that cannot be stored together (one JSON "
            "shape per extra analysis key)"))]


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with unhashable values (lists, arrays, objects) as canonical JSON text, so
    rows can be compared, grouped and told apart whatever an extra analysis key holds."""
    out = {}
    for name in frame.columns:
        column = frame[name]
        if column.dtype == object and any(isinstance(v, list | dict | np.ndarray | tuple)
                                          for v in column):
            column = column.map(lambda v: json.dumps(json_value(v) if not isinstance(
                v, np.ndarray) else v.tolist(), sort_keys=True, default=str)
                if isinstance(v, list | dict | np.ndarray | tuple) else v)
        out[name] = column
    return pd.DataFrame(out, index=frame.index)


def quarantine_duplicates(frame: pd.DataFrame, sources: np.ndarray, row_numbers: np.ndarray
                          ) -> tuple[pd.DataFrame, list[dict[str, Any]], np.ndarray]:
    """One row per (task_id, attempt): an exact copy is quarantined (the first is kept);
    twins that differ in anything are all quarantined, since which one is true is unknown.
    `sources` and `row_numbers` say where each row came from; returns the kept frame, the
    quarantined rows and the mask of rows kept."""
    keys = ["task_id", "attempt"]
    twins = frame.duplicated(subset=keys, keep=False).to_numpy()
    if not twins.any():
        return frame, [], np.ones(len(frame), dtype=bool)
    candidates = _comparable(frame.loc[twins])
    versions = candidates.drop_duplicates().groupby(keys).size()
    conflicting = candidates.set_index(keys).index.isin(versions[versions > 1].index)
    copies = candidates.duplicated(keep="first").to_numpy()
    first_at = {}
    for i in np.flatnonzero(twins):
        first_at.setdefault((frame.at[i, "task_id"], frame.at[i, "attempt"]), i)
    drop = np.zeros(len(frame), dtype=bool)
    out = []
    for j, i in enumerate(np.flatnonzero(twins)):
        row = frame.iloc[i]
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
    return frame.loc[~drop].reset_index(drop=True), out, ~drop


def quarantine_broken_chains(frame: pd.DataFrame, sources: np.ndarray, row_numbers: np.ndarray
                             ) -> tuple[pd.DataFrame, list[dict[str, Any]], np.ndarray]:
    """A task's attempts must be one chain: one course, consecutive attempts (a log may
    start a chain after its first attempt, not skip one inside it). A task id used in two
    courses, or a chain with an attempt missing inside it, cannot be read as an escalation
    chain; all its rows are quarantined with the reason."""
    if frame.empty:
        return frame, [], np.ones(0, dtype=bool)
    # One sort by (task, attempt): within a task, the course must not change and each
    # attempt must follow the one before by 1 (duplicates are already gone).
    task, _ = pd.factorize(frame["task_id"])
    course, _ = pd.factorize(frame["course_id"])
    attempt = frame["attempt"].to_numpy(dtype=np.int64)
    order = np.lexsort((attempt, task))
    t, c, a = task[order], course[order], attempt[order]
    same = t[1:] == t[:-1]
    reused = np.isin(task, t[1:][same & (c[1:] != c[:-1])])
    gap = np.isin(task, t[1:][same & (a[1:] - a[:-1] != 1)]) & ~reused
    bad = reused | gap
    if not bad.any():
        return frame, [], np.ones(len(frame), dtype=bool)
    out = []
    attempts_of = frame.loc[gap].groupby("task_id", observed=True)["attempt"].agg(
        lambda a: sorted(int(x) for x in a)).to_dict() if gap.any() else {}
    courses_of = frame.loc[reused].groupby("task_id", observed=True)["course_id"].agg(
        lambda c: sorted(map(str, set(c)))).to_dict() if reused.any() else {}
    for i in np.flatnonzero(bad):
        row = frame.iloc[i]
        task = row["task_id"]
        if reused[i]:
            names = courses_of[task]
            reason = (f"task_id={_short(task)} is used in {len(names)} courses "
                      f"({', '.join(_short(n, 30) for n in names[:3])}); a task id names one "
                      "task of one course, so all its rows are quarantined")
        else:
            have = attempts_of[task]
            missing = sorted(set(range(min(have), max(have) + 1)) - set(have))
            reason = (f"task_id={_short(task)}: attempt {missing[0]} is missing (attempts "
                      f"{', '.join(map(str, have[:10]))}): the chain has a gap, so all its "
                      "rows are quarantined")
        out.append({"source": sources[i], "row": int(row_numbers[i]), "reason": reason,
                    "record": {k: json_value(v) for k, v in row.items()}})
    return frame.loc[~bad].reset_index(drop=True), out, ~bad
