"""Where attempt logs live: local files and folders, globs, and object-store URLs.

A log source is a local `Path` or, for anything with a scheme (`s3://`, `gs://`, `memory://`,
`file://`), the URL of one object read through fsspec. Folders and globs expand to the
`.jsonl` / `.parquet` files under them, so a hive-partitioned Parquet dataset
(`logs/date=2026-11-28/shard=3/part-....parquet`) is read partition file by partition file:
the contract's validation and quarantine then apply to each partition on its own.
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Any

from router_model.files import sha256_file

LogSource = Path | str  # a local path, or an fsspec URL of one file
LOG_SUFFIXES = (".jsonl", ".parquet")
GLOB_CHARS = frozenset("*?[")


class LogReadError(ValueError):
    """A log (or every log) that cannot be read; the message says which and why."""


def is_url(item: str | Path) -> bool:
    return isinstance(item, str) and "://" in item


def suffix(source: LogSource) -> str:
    return PurePosixPath(str(source).split("://", 1)[-1]).suffix


def name(source: LogSource) -> str:
    return PurePosixPath(str(source).split("://", 1)[-1]).name


def _filesystem(url: str) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:  # e.g. s3:// without s3fs installed
        raise LogReadError(f"log URL {url[:200]!r}: {exc}; install the fsspec backend for "
                           "its scheme (pip install -e '.[cloud]' adds s3fs and gcsfs)") from None


def _expand_url(url: str) -> list[str]:
    fs, path = _filesystem(url)
    protocol = url.split("://", 1)[0]
    if any(c in path for c in GLOB_CHARS):
        found = fs.glob(path)
        found = {f for p in found for f in (fs.find(p) if fs.isdir(p) else [p])}
    elif fs.isdir(path):
        found = fs.find(path)
    elif fs.exists(path):
        found = [path]
    else:
        raise FileNotFoundError(f"log URL {url[:200]!r} does not exist")
    return sorted(f"{protocol}://{f.split('://', 1)[-1]}" for f in found
                  if suffix(f) in LOG_SUFFIXES)


def _expand_local(item: str | Path) -> list[Path]:
    p = Path(item)
    try:
        p.stat()
    except FileNotFoundError:
        pass
    except OSError as exc:  # e.g. a name too long, or a folder we may not enter
        raise LogReadError(f"log path {str(p)[:200]!r}: {exc.strerror}") from None
    if p.is_dir():  # resolved: one file reached by two spellings is read once
        return sorted(q.resolve() for q in p.rglob("*")
                      if q.suffix in LOG_SUFFIXES and q.is_file())
    if p.exists():
        return [p.resolve()]
    if any(c in str(item) for c in GLOB_CHARS):
        hits = [Path(h) for h in sorted(glob.glob(str(item), recursive=True))]
        return [f for h in hits
                for f in (_expand_local(h) if h.is_dir()
                          else [h.resolve()] if h.suffix in LOG_SUFFIXES else [])]
    raise FileNotFoundError(f"log path {str(p)[:200]!r} does not exist; point paths.logs at a "
                            "log file, folder or glob (e.g. run router-simulate first)")


def expand_log_paths(paths: str | Path | Sequence[str | Path]) -> list[LogSource]:
    """Files, folders, globs and URLs -> the sorted `.jsonl` / `.parquet` files they hold."""
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    files: list[LogSource] = []
    for item in items:
        files += _expand_url(item) if is_url(item) else _expand_local(item)
    files = list(dict.fromkeys(files))  # a glob may name a file and its folder
    if not files:
        shown = [str(i)[:200] for i in items[:5]]
        raise LogReadError(f"no .jsonl or .parquet log files found under {shown}")
    return files


def open_binary(source: LogSource) -> IO[bytes]:
    """The source's bytes, from disk or through fsspec."""
    if isinstance(source, Path):
        return source.open("rb")
    fs, path = _filesystem(source)
    return fs.open(path, "rb")


def fingerprint(source: LogSource, h: hashlib._Hash) -> None:
    """Feed what identifies the source's content into `h`: its bytes for a local file; the
    store's own key (ETag, checksum or size + mtime, via fsspec's `ukey`) for a URL, so a
    remote dataset is not downloaded twice just to be hashed."""
    h.update(name(source).encode())
    if isinstance(source, Path):
        sha256_file(source, h)
    else:
        fs, path = _filesystem(source)
        h.update(str(fs.ukey(path)).encode())


def same_file(source: LogSource, other: str | Path | None) -> bool:
    """Whether `source` is the local file `other` (the quarantine file is never a log)."""
    return (other is not None and isinstance(source, Path)
            and source.resolve() == Path(other).resolve())
