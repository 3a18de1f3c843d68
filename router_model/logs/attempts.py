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
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from router_model.contract import AttemptRecord
from router_model.files import stable_hash32
from router_model.logs.read_files import (
    DEFAULT_LIMITS,
    ReadLimits,
    read_jsonl,
    read_parquet,
)
from router_model.logs.store import (
    DEFAULT_URL_SCHEMES,
    LogReadError,
    LogSource,
    expand_log_paths,
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


@dataclass
class LoadResult:
    """Valid rows, quarantined rows and counts from reading one or more log files."""

    frame: pd.DataFrame
    quarantined: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)


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
                frame, bad, pre = read_jsonl(path, limits, url_schemes)
                bad_rows += bad
            else:
                frame, pre = read_parquet(path, limits, url_schemes)
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
