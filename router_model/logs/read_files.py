"""One log file into rows, strictly: what a JSONL line or a Parquet file may hold before any
row reaches the contract's validator (`validate.py`).

A JSONL line must be UTF-8 and one JSON object without NaN / Infinity / 1e400, lone
surrogates or integers outside int64; a row may hold at most `max_keys` keys and text values
of at most `max_value_chars`, a file at most `max_columns` distinct keys (`ReadLimits`).
What breaks these is quarantined with its reason, never read into a frame.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from router_model.config import LogReading
from router_model.logs.store import DEFAULT_URL_SCHEMES, LogReadError, LogSource, open_binary

QUARANTINE_KEYS = frozenset({"source", "row", "reason", "record"})


@dataclass(frozen=True)
class ReadLimits:
    """What one row, and one file, may hold; and the window its timestamps must fall in.
    The module default is `DEFAULT_LIMITS`; a command may pass its own (from config)."""

    max_keys: int = 256  # keys in one row, nested analysis keys included
    max_columns: int = 1024  # distinct keys over one file
    max_value_chars: int = 100_000  # one text value (a brief is a few thousand)
    max_row_bytes: int = 16_000_000  # one JSONL line (never held whole past this)
    earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_future: timedelta = timedelta(days=1)  # clock skew allowed past now

    def window(self, now: datetime | None = None) -> tuple[pd.Timestamp, pd.Timestamp]:
        latest = (now or datetime.now(UTC)) + self.max_future
        return pd.Timestamp(self.earliest), pd.Timestamp(latest)


DEFAULT_LIMITS = ReadLimits()


def read_options(reading: LogReading | None) -> dict[str, Any]:
    """`limits` and `url_schemes` for the readers from `paths.log_reading` (None: defaults)."""
    if reading is None:
        return {"limits": DEFAULT_LIMITS, "url_schemes": DEFAULT_URL_SCHEMES}
    earliest = pd.Timestamp(reading.earliest)
    earliest = earliest.tz_localize(UTC) if earliest.tzinfo is None else earliest
    limits = ReadLimits(max_keys=reading.max_keys, max_columns=reading.max_columns,
                        max_value_chars=reading.max_value_chars,
                        max_row_bytes=reading.max_row_bytes,
                        earliest=earliest.to_pydatetime(),
                        max_future=timedelta(days=reading.max_future_days))
    return {"limits": limits, "url_schemes": tuple(reading.url_schemes)}


class _NonFinite:
    """What the strict JSON reader puts where a line said NaN / Infinity / 1e400."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_float(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def _first_non_finite(obj: Any, path: str = "") -> str | None:
    stack = [(obj, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, _NonFinite):
            return f"{where or 'value'}={value.text}: not a finite number"
        if isinstance(value, dict):
            stack += [(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return None


# Cheap signs of a value Arrow cannot store: an escaped UTF-16 surrogate, or 19+ digits.
_SUSPECT = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}|\d{19,}")
_INT64 = (-(2**63), 2**63 - 1)


def _first_unstorable(obj: Any, path: str = "") -> str | None:
    """The first lone surrogate or out-of-int64 integer in a parsed record, as a reason."""
    if isinstance(obj, dict):
        items: Any = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj)
    else:
        items = ()
    for key, value in items:
        where = f"{path}.{key}" if path else str(key)
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return f"{where}: a lone UTF-16 surrogate (not valid Unicode text)"
        elif isinstance(value, int) and not isinstance(value, bool) and \
                not _INT64[0] <= value <= _INT64[1]:
            return (f"{where}: an integer of {len(str(value))} digits, outside the 64-bit "
                    "integer range")
        elif isinstance(value, (dict, list)):
            found = _first_unstorable(value, where)
            if found:
                return found
    return None


def _flatten(obj: dict[str, Any], limits: ReadLimits
             ) -> tuple[dict[str, Any], str | None, str]:
    """A record's keys as flat columns (`analysis.domain`), as `pd.json_normalize` names
    them; the reason it cannot even be a row (more than `max_keys` keys: checked while
    flattening, so a row with 20k keys is refused after `max_keys` of them), or None; and
    the reason it is quarantined anyway (a text value over `max_value_chars`), or ""."""
    flat: dict[str, Any] = {}
    oversized = ""
    stack: list[tuple[str, dict[str, Any]]] = [("", obj)]
    while stack:
        prefix, node = stack.pop()
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                stack.append((f"{name}.", value))
                continue
            if len(flat) >= limits.max_keys:
                return flat, f"the row has more than {limits.max_keys} keys", oversized
            if not oversized and isinstance(value, str) and \
                    len(value) > limits.max_value_chars:
                oversized = (f"{name[:60]}: a value of {len(value)} characters, more than "
                             f"{limits.max_value_chars}")
            flat[name] = value
    return flat, None, oversized


class _StrictJSON:
    """json.loads that marks NaN / Infinity / 1e400 instead of reading them as floats, and
    says whether the last line held one."""

    def __init__(self) -> None:
        self.flagged = False

    def _constant(self, name: str) -> _NonFinite:
        self.flagged = True
        return _NonFinite(name)

    def _number(self, text: str) -> Any:
        value = _parse_float(text)
        self.flagged = self.flagged or isinstance(value, _NonFinite)
        return value

    def loads(self, line: str) -> Any:
        self.flagged = False
        return json.loads(line, parse_constant=self._constant, parse_float=self._number)


def _parse_line(raw: bytes, parser: _StrictJSON, limits: ReadLimits, columns: set[str]
                ) -> tuple[dict[str, Any] | None, str]:
    """One JSONL line as a flat row and the reason to quarantine it anyway ("" = none), or
    (None, why it is not a row at all)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"line is not valid UTF-8 (byte {exc.start})"
    try:
        obj = parser.loads(line)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        return None, f"line is not valid JSON ({msg})"
    if not isinstance(obj, dict):
        return None, "line is not a JSON object"
    if parser.flagged:
        return None, _first_non_finite(obj) or "not a finite number"
    odd = _SUSPECT.search(line) and _first_unstorable(obj)
    if odd:
        return None, odd
    flat, too_big, oversized = _flatten(obj, limits)
    new_keys = flat.keys() - columns if too_big is None else ()
    if too_big is None and len(columns) + len(new_keys) > limits.max_columns:
        too_big = (f"the row adds {len(new_keys)} keys to the {len(columns)} the "
                   f"file's rows hold, more than {limits.max_columns} in all")
    if too_big:
        return None, too_big
    columns.update(new_keys)
    return flat, oversized


def read_jsonl(path: LogSource, limits: ReadLimits = DEFAULT_LIMITS,
                url_schemes: Sequence[str] = DEFAULT_URL_SCHEMES
                ) -> tuple[pd.DataFrame, list[dict[str, Any]], np.ndarray]:
    """Rows of a JSONL log, the lines that are not records (with their reasons), and a
    reason per row to quarantine it whatever else the validator finds ("" = none).

    Strict: a line must be UTF-8 and a JSON object without NaN / Infinity / 1e400, within
    the limits (`ReadLimits`)."""
    rows, bad, pre = [], [], []
    columns: set[str] = set()
    parser = _StrictJSON()
    with open_binary(path, url_schemes) as fh:
        for lineno, (raw, too_long) in enumerate(_lines(fh, limits.max_row_bytes), start=1):
            preview = raw[:2000].decode("utf-8", "replace")
            if too_long:
                bad.append({"source": str(path), "row": lineno, "record": preview,
                            "reason": f"the line is more than {limits.max_row_bytes} bytes "
                                      "(the most a row may hold)"})
                continue
            if not raw.strip():
                continue
            flat, reason = _parse_line(raw, parser, limits, columns)
            if flat is None:
                bad.append({"source": str(path), "row": lineno, "reason": reason,
                            "record": preview})
                continue
            flat["_row"] = lineno
            rows.append(flat)
            pre.append(reason)
    if rows and QUARANTINE_KEYS.issuperset(k for k in rows[0] if k != "_row"):
        raise LogReadError(f"{path}: a quarantine file (source, row, reason, record), not "
                           "an attempt log; skipped")
    if not rows and bad:
        raise LogReadError(f"none of its {len(bad)} lines is a JSON attempt record (first "
                           f"problem: {bad[0]['reason']}); is it really a JSONL log?")
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
    return frame, bad, np.array(pre, dtype=object)


def _lines(fh: Any, limit: int) -> Iterable[tuple[bytes, bool]]:
    """(line, too long) for each line of the file: a line longer than `limit` bytes comes
    as its first `limit` bytes and True; the rest of it is read through, never held."""
    while True:
        line = fh.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit:
            yield line, False
            continue
        head = line
        while line and not line.endswith(b"\n"):
            line = fh.readline(limit + 1)
        yield head[:limit], True


def read_parquet(path: LogSource, limits: ReadLimits = DEFAULT_LIMITS,
                  url_schemes: Sequence[str] = DEFAULT_URL_SCHEMES
                  ) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows of a Parquet log, and a reason per row for NaN / Infinity in float columns
    (Arrow keeps NaN apart from null; pandas would not) and for rows past the limits."""
    try:
        with open_binary(path, url_schemes) as fh:
            schema = pq.read_schema(fh)
            if len(schema.names) > limits.max_columns:  # refused before any row is read
                raise LogReadError(f"{len(schema.names)} columns, more than the "
                                   f"{limits.max_columns} a log may hold")
            fh.seek(0)
            table = pq.read_table(fh)
        table.validate(full=True)  # e.g. text that is not UTF-8: Arrow does not check on read
    except LogReadError:
        raise
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise LogReadError(f"not a readable Parquet file ({type(exc).__name__}: "
                           f"{str(exc)[:200]})") from None
    reasons = np.full(table.num_rows, "", dtype=object)

    def flag(mask: Any, message: Any) -> None:
        for i in np.flatnonzero(np.asarray(mask, dtype=bool)):
            msg = message(int(i))
            reasons[i] = f"{reasons[i]}; {msg}" if reasons[i] else msg

    wide = table.num_columns > limits.max_keys  # else no row can hold too many keys
    filled = np.zeros(table.num_rows, dtype=np.int64)
    for name in table.column_names:
        column = table.column(name)
        if wide:
            filled += column.is_valid().to_numpy(zero_copy_only=False)
        if (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)) and \
                (pc.max(pc.binary_length(column)).as_py() or 0) > limits.max_value_chars:
            long = pc.fill_null(pc.greater(pc.utf8_length(column), limits.max_value_chars),
                                False).to_numpy(zero_copy_only=False)
            flag(long, lambda i, n=name, c=column: (
                f"{n}: a value of {len(c[i].as_py())} characters, more than "
                f"{limits.max_value_chars}"))
        if not pa.types.is_floating(column.type):
            continue
        nan = pc.fill_null(pc.or_(pc.is_nan(column), pc.is_inf(column)), False)
        flag(nan.to_numpy(zero_copy_only=False),
             lambda i, n=name, c=column: f"{n}={c[i].as_py()}: not a finite number")
    flag(filled > limits.max_keys, lambda i: f"the row has more than {limits.max_keys} keys")
    try:
        frame = table.to_pandas()
    except (pa.ArrowException, UnicodeDecodeError) as exc:  # e.g. binary data marked as text
        raise LogReadError(f"Parquet file with columns pandas cannot read "
                           f"({type(exc).__name__}: {str(exc)[:200]})") from None
    frame["_row"] = np.arange(1, len(frame) + 1)
    return frame, reasons
