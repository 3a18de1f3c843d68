"""Where attempt logs live: local files and folders, globs, and object-store URLs.

A log source is a local `Path` or, for anything with a scheme (`s3://`, `gs://`, `memory://`,
`file://`), the URL of one object read through fsspec. Folders and globs expand to the
`.jsonl` / `.parquet` files under them, so a hive-partitioned Parquet dataset
(`logs/date=2026-11-28/shard=3/part-....parquet`) is read partition file by partition file:
the contract's validation and quarantine then apply to each partition on its own.

Only URL schemes in an allow-list are read (`url_schemes`, by default `DEFAULT_URL_SCHEMES`:
local files, fsspec's in-memory store, and the cloud extras' s3 and gs); anything else
(`http://`, `ftp://`, a chained `simplecache::...`) is refused before fsspec sees it, so a
log path never reaches the network unless the caller allows that scheme. A local path must
be a regular file or a folder: a FIFO, a device or a socket is refused, never waited on.
"""

from __future__ import annotations

import glob
import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Any

LogSource = Path | str  # a local path, or an fsspec URL of one file
LOG_SUFFIXES = (".jsonl", ".parquet")
GLOB_CHARS = frozenset("*?[")
# URL schemes a log may be read from unless the caller says otherwise: local files, the
# in-memory store, and the object stores of the `cloud` extra (s3fs, gcsfs).
DEFAULT_URL_SCHEMES = ("file", "local", "memory", "s3", "s3a", "gs", "gcs")


class LogReadError(ValueError):
    """A log (or every log) that cannot be read; the message says which and why."""


def is_url(item: str | Path) -> bool:
    return isinstance(item, str) and "://" in item


def suffix(source: LogSource) -> str:
    return PurePosixPath(str(source).split("://", 1)[-1]).suffix


def name(source: LogSource) -> str:
    return PurePosixPath(str(source).split("://", 1)[-1]).name


def check_scheme(url: str, url_schemes: Sequence[str] = DEFAULT_URL_SCHEMES) -> None:
    """Refuse a URL whose scheme is not allowed (before fsspec, so before any network)."""
    scheme = url.split("://", 1)[0].lower()
    if scheme not in {s.lower() for s in url_schemes}:
        raise LogReadError(f"log URL {url[:200]!r}: scheme {scheme[:40]!r} is not among the "
                           f"allowed ones ({', '.join(url_schemes)}); pass it in the reader's "
                           "url_schemes to read it (and install its fsspec backend)")


def _filesystem(url: str, url_schemes: Sequence[str] = DEFAULT_URL_SCHEMES) -> tuple[Any, str]:
    check_scheme(url, url_schemes)
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:  # e.g. s3:// without s3fs installed
        raise LogReadError(f"log URL {url[:200]!r}: {exc}; install the fsspec backend for "
                           "its scheme (pip install -e '.[cloud]' adds s3fs and gcsfs)") from None


def _expand_url(url: str, url_schemes: Sequence[str]) -> list[str]:
    fs, path = _filesystem(url, url_schemes)
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
        refuse_irregular(p)
        return [p.resolve()]
    if any(c in str(item) for c in GLOB_CHARS):
        hits = [Path(h) for h in sorted(glob.glob(str(item), recursive=True))]
        return [f for h in hits
                for f in (_expand_local(h) if h.is_dir()
                          else [h.resolve()] if h.suffix in LOG_SUFFIXES else [])]
    raise FileNotFoundError(f"log path {str(p)[:200]!r} does not exist; point paths.logs at a "
                            "log file, folder or glob (e.g. run router-simulate first)")


def refuse_irregular(path: Path) -> None:
    """A log file must be a regular file: reading a FIFO would wait forever for a writer."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise LogReadError(f"log path {str(path)[:200]!r}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise LogReadError(f"log path {str(path)[:200]!r} is not a regular file (a FIFO, "
                           "device or socket); point data.logs at log files or folders")


def expand_log_paths(paths: str | Path | Sequence[str | Path], *,
                     url_schemes: Sequence[str] = DEFAULT_URL_SCHEMES) -> list[LogSource]:
    """Files, folders, globs and URLs -> the sorted `.jsonl` / `.parquet` files they hold.
    URLs only in `url_schemes` (see the module)."""
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    files: list[LogSource] = []
    for item in items:
        files += _expand_url(item, url_schemes) if is_url(item) else _expand_local(item)
    files = list(dict.fromkeys(files))  # a glob may name a file and its folder
    if not files:
        shown = [str(i)[:200] for i in items[:5]]
        raise LogReadError(f"no .jsonl or .parquet log files found under {shown}")
    return files


def open_binary(source: LogSource, url_schemes: Sequence[str] = DEFAULT_URL_SCHEMES
                ) -> IO[bytes]:
    """The source's bytes, from disk (a regular file, opened without waiting) or through
    fsspec (an allowed scheme only)."""
    if isinstance(source, Path):
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise LogReadError(f"log path {str(source)[:200]!r} is not a regular file "
                                   "(a FIFO, device or socket)")
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
    fs, path = _filesystem(source, url_schemes)
    return fs.open(path, "rb")


def fingerprint(source: LogSource, h: hashlib._Hash) -> None:
    """Feed what identifies the source's content into `h`: its bytes for a local file; the
    store's own key (ETag, checksum or size + mtime, via fsspec's `ukey`) for a URL, so a
    remote dataset is not downloaded twice just to be hashed."""
    h.update(name(source).encode())
    if isinstance(source, Path):
        with open_binary(source) as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    else:
        fs, path = _filesystem(source)
        h.update(str(fs.ukey(path)).encode())


def same_file(source: LogSource, other: str | Path | None) -> bool:
    """Whether `source` is the local file `other` (the quarantine file is never a log)."""
    return (other is not None and isinstance(source, Path)
            and source.resolve() == Path(other).resolve())
