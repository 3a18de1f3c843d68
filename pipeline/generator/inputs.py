"""The Stage-4 analysis_result the generator reads, validated before any LLM call.

A bad file (not UTF-8, not JSON, missing keys, wrong types, empty sections, NaN) is rejected
with the JSON path of every problem, so the caller can fix Stage 4's output instead of paying
for a half course. Messages are one line: the commands print them as `<command>: <message>`.
The models themselves are in `plan.py` (the world model builds courses with them and never
reads a file, so it needs neither this reader nor the router's request model it consults).
"""

from __future__ import annotations

import json
import math
import stat
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.generator.plan import AnalysisResult


class InputError(ValueError):
    """The analysis_result is unusable; the message lists each problem with its JSON path."""


def json_path(loc: tuple[Any, ...]) -> str:
    """('sections', 2, 'brief') -> '$.sections[2].brief'."""
    out = "$"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _non_finite(data: Any, loc: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of NaN / Infinity anywhere (extra analysis keys are not typed, so look)."""
    if isinstance(data, float) and not math.isfinite(data):
        return [loc]
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _non_finite(v, (*loc, k))]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _non_finite(v, (*loc, i))]
    return []


def _router_refusals(data: Any) -> list[str]:
    """What the router would refuse in the analysis block: its own request model decides
    (extra keys' number and sizes, plain JSON), so the two limits cannot drift apart."""
    from router_model.serve.requests import TaskIn

    analysis = data.get("analysis") if isinstance(data, dict) else None
    if not isinstance(analysis, dict):
        return []  # missing or mistyped: the schema check below names it
    try:
        TaskIn.model_validate({"field": "course_title", "prompt_tokens": 0,
                               "analysis": analysis})
    except ValidationError as exc:
        return [f"$.analysis: the router refuses it: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors() if "finite" not in e["msg"]]
    return []


def parse_analysis_result(data: Any) -> AnalysisResult:
    """Validate a decoded analysis_result; raise InputError naming every bad JSON path."""
    problems = [f"{json_path(loc)}: NaN/Infinity is not a number" for loc in _non_finite(data)]
    problems += _router_refusals(data)
    try:
        result = AnalysisResult.model_validate(data)
    except ValidationError as exc:
        problems += [f"{json_path(e['loc'])}: {e['msg']}" for e in exc.errors()
                     if "finite" not in e["msg"]]
    if problems:
        raise InputError("invalid analysis_result: " + "; ".join(problems))
    return result


MAX_INPUT_BYTES = 64 * 2**20  # an analysis_result is kilobytes; a course's sources, a few MB


def _input_text(path: Path) -> str:
    """The file's text, read only from a regular file within MAX_INPUT_BYTES: a FIFO waited
    forever for a writer, and a link to /dev/zero read until memory ran out."""
    info = path.stat()
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(21, "Is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path}: not a regular file (a FIFO, device or socket is never "
                         "read)")
    if info.st_size > MAX_INPUT_BYTES:
        raise InputError(f"{path}: {info.st_size:,} bytes, more than the {MAX_INPUT_BYTES:,} "
                         "an analysis_result may hold")
    return path.read_text(encoding="utf-8")


def load_analysis_result(path: str | Path) -> AnalysisResult:
    """Read and validate one analysis_result JSON file."""
    path = Path(path)
    try:
        data = json.loads(_input_text(path))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}: "
                         f"{exc.object[exc.start:exc.start + 1]!r})") from None
    except OSError as exc:  # a folder, no permission, ...
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg})") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply to be an analysis_result") from None
    try:
        return parse_analysis_result(data)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    except RecursionError:  # under the decoder's limit, over the checks' (a few hundred)
        raise InputError(f"{path}: JSON nested too deeply to be an analysis_result") from None
