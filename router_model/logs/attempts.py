"""Attempt logs on disk: writing and reading the contract's `AttemptRecord`.

The record is expressed once, as the pydantic model in `router_model.contract`; the Arrow
schema here and the column-wise validator (`validate.py`) are both derived from it,
so the three can never disagree.

On disk a log is JSONL (one record per line, `analysis` nested) or Parquet (flat columns, the
analysis keys stored as `analysis.<key>`). Reading validates every row; rows that break the
contract are written to a quarantine file with their row number and reason, never dropped
silently. What the reader refuses besides the pydantic rules: NaN and +-Infinity anywhere
(JSON has neither; a Parquet float may), integers outside int64, timestamps that are not
ISO-8601 text, lines that are not UTF-8, and duplicated `(task_id, attempt)` rows (an exact
copy is quarantined and the first kept; twins that differ are quarantined together). A file
that cannot be read at all (a 0-byte Parquet, a UTF-16 or binary JSONL) is quarantined as a
whole, with its path and reason, and reading goes on; a quarantine file is never read back
as a log.

At the door, before any frame is built (`ReadLimits`, a parameter of the reader with module
defaults): a row with more keys than `max_keys`, a string longer than `max_value_chars`, a
JSONL line longer than `max_row_bytes`, or one that would take a file past `max_columns`
distinct keys is quarantined with the reason (one row with 20k keys made memory grow as
rows x keys); a timestamp outside the window (`earliest`, now + `max_future`) is
quarantined, a row from the future included; an object where the contract wants a plain
value, `true` where it wants a number or a version, and an extra analysis key whose rows
disagree on its JSON type are quarantined; so are a task's rows when its chain has a gap
(attempts 1 and 3 without 2) or its id is reused in another course.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

from router_model.contract import AttemptRecord
from router_model.files import stable_hash32
from router_model.logs.store import (
    DEFAULT_URL_SCHEMES,
    LogReadError,
    LogSource,
    expand_log_paths,
    open_binary,
    same_file,
    suffix,
)
from router_model.logs.validate import (
    KNOWN_COLUMNS,
    column_rules,
    join_reasons,
    json_value,
    quarantine_broken_chains,
    quarantine_duplicates,
    validate_frame,
)

__all__ = ["LogReadError", "expand_log_paths", "read_attempts", "write_attempts"]


# --------------------------------------------------------------------------------------
# Column rules derived from the pydantic model


_ARROW_TYPES = {
    "str": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "datetime": pa.timestamp("us", tz="UTC"),
}


def arrow_schema(extra_analysis: dict[str, pa.DataType] | None = None) -> pa.Schema:
    """The Parquet schema: one flat column per rule, plus any extra analysis keys."""
    fields = []
    for r in column_rules():
        if r.kind == "literal":
            typ = pa.int64() if isinstance(r.choices[0], int) else pa.string()
        else:
            typ = _ARROW_TYPES[r.kind]
        fields.append(pa.field(r.name, typ, nullable=not r.required))
    for key, typ in (extra_analysis or {}).items():
        fields.append(pa.field(key, typ, nullable=True))
    return pa.schema(fields)


# --------------------------------------------------------------------------------------
# Writing


def records_to_frame(records: Iterable[AttemptRecord | dict[str, Any]]) -> pd.DataFrame:
    """Flatten records (models or dicts) into the flat column layout."""
    rows = [r.model_dump() if isinstance(r, BaseModel) else r for r in records]
    frame = pd.json_normalize(rows, sep=".")
    return frame


def _extra_analysis_types(frame: pd.DataFrame) -> dict[str, pa.DataType]:
    extras = [c for c in frame.columns if c.startswith("analysis.") and c not in KNOWN_COLUMNS]
    return {c: pa.Array.from_pandas(frame[c]).type for c in extras}


def attempt_table(frame: pd.DataFrame) -> pa.Table:
    """The flat frame as an Arrow table in the contract's schema (extra analysis keys kept)."""
    schema = arrow_schema(_extra_analysis_types(frame))
    missing = [c for c in schema.names if c not in frame.columns]
    frame = frame.assign(**{c: None for c in missing})
    frame = frame.assign(timestamp=pd.to_datetime(frame["timestamp"], utc=True).dt.floor("us"))
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def write_attempts(records: pd.DataFrame | Iterable[AttemptRecord | dict[str, Any]],
                   path: str | Path, *, shards: int = 0) -> Path:
    """Write attempt records to `.jsonl` or `.parquet` (chosen by suffix), or, for a path
    without a suffix, add them to a hive-partitioned Parquet dataset there
    (`write_log_dataset`; `shards` > 0 also partitions by course shard)."""
    path = Path(path)
    frame = records if isinstance(records, pd.DataFrame) else records_to_frame(records)
    if not path.suffix:
        return write_log_dataset(frame, path, shards=shards)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pq.write_table(attempt_table(frame), path)
    elif path.suffix == ".jsonl":
        with path.open("w", encoding="utf-8") as fh:
            for row in _frame_to_nested(frame):
                fh.write(json.dumps(row, default=str) + "\n")
    else:
        raise ValueError(f"log path {str(path)[:200]!r} must end in .jsonl or .parquet, or "
                         "have no suffix (a partitioned dataset folder)")
    return path


def course_shard(course_ids: pd.Series, shards: int) -> np.ndarray:
    """A stable shard number per course (sha256 of the id), the same on every machine."""
    return (stable_hash32(course_ids) % shards).astype(np.int32)


def write_log_dataset(frame: pd.DataFrame, root: str | Path, *, shards: int = 0,
                      basename: str | None = None) -> Path:
    """Add rows to a hive-partitioned Parquet dataset: `root/date=YYYY-MM-DD[/shard=k]/`.

    A course's rows all go to the date its first attempt was made (and to its shard), so no
    escalation chain is split across partitions and each partition builds its examples on
    its own. Each call writes new uniquely named files (appending never rewrites a
    partition another writer is reading), or files named `basename`, which a later call with
    the same name replaces: re-exporting one course does not duplicate it.
    """
    import pyarrow.dataset as ds

    root = Path(root)
    if len(frame) == 0:
        return root
    if basename:  # the same export again, perhaps with other shards: replace, never add
        for old in root.glob(f"date=*/**/part-{basename}-*.parquet"):
            old.unlink()
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    first = stamps.groupby(frame["course_id"].to_numpy()).transform("min")
    table = attempt_table(frame).append_column("date", pa.array(
        first.dt.strftime("%Y-%m-%d").to_numpy(), pa.string()))
    fields = [pa.field("date", pa.string())]
    if shards > 0:
        table = table.append_column("shard", pa.array(course_shard(frame["course_id"], shards)))
        fields.append(pa.field("shard", pa.int32()))
    ds.write_dataset(table, root, format="parquet", partitioning=ds.partitioning(
        pa.schema(fields), flavor="hive"),
        basename_template=f"part-{basename or uuid.uuid4().hex}-{{i}}.parquet",
        existing_data_behavior="overwrite_or_ignore")
    return root


def _is_writer_part(relative: Path) -> bool:
    """`date=.../[shard=.../]part-*.parquet`: a file `write_log_dataset` wrote."""
    folders, name = relative.parts[:-1], relative.name
    return (name.startswith("part-") and name.endswith(".parquet")
            and len(folders) in (1, 2) and folders[0].startswith("date=")
            and all(f.startswith("shard=") for f in folders[1:]))


def log_dataset_parts(root: str | Path) -> list[Path]:
    """The Parquet parts `write_log_dataset` wrote under `root`; refuses (ValueError) when
    the folder holds anything else, since it may not be a log dataset at all."""
    root = Path(root)
    if not root.exists():
        return []
    files = [p for p in root.rglob("*") if p.is_file() or p.is_symlink()]
    foreign = [p for p in files if not _is_writer_part(p.relative_to(root))]
    if foreign:
        raise ValueError(f"{str(root)[:200]!r} holds files that are not partitioned log parts "
                         f"(e.g. {str(foreign[0].relative_to(root))[:100]!r}); refusing to "
                         "replace it. Point paths.logs at an empty or log-only folder")
    return files


def clear_log_dataset(root: str | Path) -> None:
    """Remove a partitioned log dataset's parts before it is rewritten (see
    `log_dataset_parts`: only the writer's own files, and only when nothing else is there)."""
    for p in log_dataset_parts(root):
        p.unlink()


def _frame_to_nested(frame: pd.DataFrame) -> Iterable[dict[str, Any]]:
    frame = frame.assign(timestamp=pd.to_datetime(frame["timestamp"], utc=True).map(
        lambda t: t.isoformat()))
    analysis_cols = [c for c in frame.columns if c.startswith("analysis.")]
    other_cols = [c for c in frame.columns if not c.startswith("analysis.")]
    for row in frame.to_dict(orient="records"):
        out = {c: json_value(row[c]) for c in other_cols}
        out["analysis"] = {c[len("analysis."):]: json_value(row[c]) for c in analysis_cols
                           if json_value(row[c]) is not None}
        yield out


# --------------------------------------------------------------------------------------
# Reading and validation


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


@dataclass
class LoadResult:
    """Valid rows, quarantined rows and counts from reading one or more log files."""

    frame: pd.DataFrame
    quarantined: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)


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


def _read_jsonl(path: LogSource, limits: ReadLimits = DEFAULT_LIMITS,
                url_schemes: Sequence[str] = DEFAULT_URL_SCHEMES
                ) -> tuple[pd.DataFrame, list[dict[str, Any]], np.ndarray]:
    """Rows of a JSONL log, the lines that are not records (with their reasons), and a
    reason per row to quarantine it whatever else the validator finds ("" = none).

    Strict: a line must be UTF-8 and a JSON object without NaN / Infinity / 1e400, within
    the limits (`ReadLimits`)."""
    rows, bad, pre = [], [], []
    columns: set[str] = set()
    flagged = False

    def constant(name: str) -> _NonFinite:
        nonlocal flagged
        flagged = True
        return _NonFinite(name)

    def number(text: str) -> Any:
        nonlocal flagged
        value = _parse_float(text)
        flagged = flagged or isinstance(value, _NonFinite)
        return value

    with open_binary(path, url_schemes) as fh:
        for lineno, (raw, too_long) in enumerate(_lines(fh, limits.max_row_bytes), start=1):
            if too_long:
                bad.append({"source": str(path), "row": lineno,
                            "record": raw[:2000].decode("utf-8", "replace"), "reason": (
                                f"the line is more than {limits.max_row_bytes} bytes (the "
                                "most a row may hold)")})
                continue
            if not raw.strip():
                continue
            preview = raw[:2000].decode("utf-8", "replace")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad.append({"source": str(path), "row": lineno, "reason": (
                    f"line is not valid UTF-8 (byte {exc.start})"), "record": preview})
                continue
            flagged = False
            try:
                obj = json.loads(line, parse_constant=constant, parse_float=number)
            except (json.JSONDecodeError, RecursionError, ValueError) as exc:
                msg = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
                bad.append({"source": str(path), "row": lineno,
                            "reason": f"line is not valid JSON ({msg})", "record": preview})
                continue
            if not isinstance(obj, dict):
                bad.append({"source": str(path), "row": lineno,
                            "reason": "line is not a JSON object", "record": preview})
                continue
            if flagged:
                bad.append({"source": str(path), "row": lineno,
                            "reason": _first_non_finite(obj), "record": preview})
                continue
            odd = _SUSPECT.search(line) and _first_unstorable(obj)
            if odd:
                bad.append({"source": str(path), "row": lineno, "reason": odd,
                            "record": preview})
                continue
            flat, too_big, oversized = _flatten(obj, limits)
            new_keys = flat.keys() - columns if too_big is None else ()
            if too_big is None and len(columns) + len(new_keys) > limits.max_columns:
                too_big = (f"the row adds {len(new_keys)} keys to the {len(columns)} the "
                           f"file's rows hold, more than {limits.max_columns} in all")
            if too_big:
                bad.append({"source": str(path), "row": lineno, "reason": too_big,
                            "record": preview})
                continue
            columns.update(new_keys)
            flat["_row"] = lineno
            rows.append(flat)
            pre.append(oversized)
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


def _read_parquet(path: LogSource, limits: ReadLimits = DEFAULT_LIMITS,
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


def read_attempts(paths: str | Path | Sequence[str | Path], *,
                  known_fields: Iterable[str] | None = None,
                  known_tiers: Iterable[str] | None = None,
                  quarantine_path: str | Path | None = None,
                  limits: ReadLimits = DEFAULT_LIMITS,
                  url_schemes: Sequence[str] = DEFAULT_URL_SCHEMES,
                  now: datetime | None = None) -> LoadResult:
    """Read and validate attempt logs; quarantine bad rows (with reasons) instead of dropping.

    A file that cannot be read at all is quarantined as one entry (`row` None) and the others
    are read; the quarantine file itself is never read as a log, even inside the folder.
    `limits`: what a row and a file may hold and the timestamps' window (ending `now` +
    `limits.max_future`); `url_schemes`: the URL schemes that may be read.
    """
    files = [f for f in expand_log_paths(paths, url_schemes=url_schemes)
             if not same_file(f, quarantine_path)]
    loaded = validate_sources(files, known_fields=known_fields, known_tiers=known_tiers,
                              limits=limits, url_schemes=url_schemes, now=now)
    if quarantine_path is not None and len(loaded.quarantined):
        write_quarantine(loaded.quarantined.to_dict("records"), quarantine_path)
    if loaded.frame.empty and len(loaded.quarantined):
        first = loaded.quarantined.iloc[0]
        raise LogReadError(
            f"no row in {[str(f)[:200] for f in files][:5]} met the attempt-log contract "
            f"({len(loaded.quarantined)} quarantined; first: {first['source']} row "
            f"{first['row']}: {first['reason']})"
            + (f"; details in {quarantine_path}" if quarantine_path else ""))
    return loaded


def write_quarantine(rows: Iterable[dict[str, Any]], path: str | Path) -> None:
    """The quarantined rows as JSONL: source, row number, reason and the record itself."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, default=str) + "\n")


def validate_sources(files: Sequence[LogSource], *, known_fields: Iterable[str] | None = None,
                     known_tiers: Iterable[str] | None = None,
                     limits: ReadLimits = DEFAULT_LIMITS,
                     url_schemes: Sequence[str] = DEFAULT_URL_SCHEMES,
                     now: datetime | None = None) -> LoadResult:
    """Read and validate these files: the valid rows, and the rest quarantined with reasons.
    Never raises for bad content; a distributed reader calls it once per partition."""
    known_fields = list(known_fields) if known_fields is not None else None
    known_tiers = list(known_tiers) if known_tiers is not None else None
    window = limits.window(now)
    good, bad_rows = [], []
    sources: list[np.ndarray] = []  # where each kept row came from: file and row number
    row_numbers: list[np.ndarray] = []
    files_quarantined = 0
    for path in files:
        try:
            if suffix(path) == ".jsonl":
                frame, bad, pre = _read_jsonl(path, limits, url_schemes)
                bad_rows += bad
            else:
                frame, pre = _read_parquet(path, limits, url_schemes)
        except (LogReadError, OSError) as exc:
            files_quarantined += 1
            bad_rows.append({"source": str(path), "row": None,
                             "reason": f"file skipped: {exc}", "record": None})
            continue
        if frame.empty:
            continue
        rows = frame.pop("_row").to_numpy()
        clean, reasons = validate_frame(frame, known_fields=known_fields,
                                        known_tiers=known_tiers, window=window)
        reasons = np.array([join_reasons(a, b) for a, b in zip(pre, reasons, strict=True)],
                           dtype=object) if (pre != "").any() else reasons
        is_bad = reasons != ""
        for i in np.flatnonzero(is_bad):
            record = {k: json_value(v) for k, v in frame.iloc[i].items()}
            bad_rows.append({"source": str(path), "row": int(rows[i]), "reason": reasons[i],
                             "record": record})
        good.append(clean.loc[~is_bad])
        sources.append(np.full(int((~is_bad).sum()), str(path), dtype=object))
        row_numbers.append(rows[~is_bad])
    frame = pd.concat(good, ignore_index=True) if good else pd.DataFrame(columns=KNOWN_COLUMNS)
    if len(frame):
        where, lines = np.concatenate(sources), np.concatenate(row_numbers)
        frame, duplicates, kept = quarantine_duplicates(frame, where, lines)
        frame, broken, _ = quarantine_broken_chains(frame, where[kept], lines[kept])
        bad_rows += duplicates + broken
        frame = _contiguous_text(frame)
    # object dtype: row numbers stay ints and a skipped file's row stays None
    quarantined = pd.DataFrame(bad_rows, columns=["source", "row", "reason", "record"],
                               dtype=object)
    counts = {"files": len(files), "valid": len(frame), "quarantined": len(quarantined),
              "files_quarantined": files_quarantined}
    return LoadResult(frame=frame, quarantined=quarantined, counts=counts)


ONE_CHUNK_MAX_BYTES = 2**31 - 2**20  # Arrow's 32-bit string offsets, with some margin


def _contiguous_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as one Arrow chunk each. Concatenated files leave a chunk per file (and
    per row group), and every later row selection on a many-chunk column is several times
    slower (examples, splits and groupings select rows of 1M-row logs a dozen times). A
    column too large for one chunk stays as it is."""
    for name in frame.columns:
        values = frame[name].array
        if not isinstance(values, pd.arrays.ArrowStringArray):
            continue
        chunked = values.__arrow_array__()
        if chunked.num_chunks > 1 and chunked.nbytes < ONE_CHUNK_MAX_BYTES:
            frame[name] = pd.Series(type(values)(pa.chunked_array([chunked.combine_chunks()])),
                                    index=frame.index, dtype=frame[name].dtype)
    return frame
