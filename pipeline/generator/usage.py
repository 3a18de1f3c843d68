"""Token usage a provider reports, checked, and estimated where it is missing or absurd.

A response without `usage` used to cost $0. Now missing usage, and usage that cannot be
true (negative, not an integer, more prompt tokens than twice the model's context window,
more completion tokens than twice what was allowed), is replaced by an estimate and the
attempt is marked `usage_estimated`.

The estimate counts tokens with tiktoken's `o200k_base` (the gpt-oss family's encoding)
when tiktoken is installed and the encoding's file is already on this machine (tiktoken
downloads encodings on first use, which an offline machine cannot: its cache folder is
`TIKTOKEN_CACHE_DIR`, and litellm, from the `litellm` extra, ships `o200k_base` and
`cl100k_base`). Otherwise it counts 4 characters per token, the routing estimate
(`tasks.estimate_tokens`), which is within about 10-25% of BPE counts on English prose.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

ENCODING = "o200k_base"
_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
ABSURD_TOKENS = 10**8  # no single call bills this many tokens


def chars_per_4(text: str) -> int:
    return math.ceil(len(text) / 4)


def _cache_dirs() -> list[Path]:
    dirs = [os.environ.get("TIKTOKEN_CACHE_DIR"), os.environ.get("DATA_GYM_CACHE_DIR")]
    spec = importlib.util.find_spec("litellm")
    if spec is not None and spec.origin:  # litellm ships two encodings (not imported here)
        dirs.append(str(Path(spec.origin).parent / "litellm_core_utils" / "tokenizers"))
    return [Path(d) for d in dirs if d]


@lru_cache(maxsize=1)
def token_counter() -> tuple[str, Callable[[str], int]]:
    """(name, counter): tiktoken's o200k_base when it loads without a download, else
    4 characters per token."""
    if importlib.util.find_spec("tiktoken") is None:
        return "chars/4", chars_per_4
    name = hashlib.sha1(_BLOB.format(ENCODING).encode()).hexdigest()  # tiktoken's cache key
    for folder in _cache_dirs():
        if (folder / name).is_file():
            os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(folder))
            import tiktoken

            try:
                encoding = tiktoken.get_encoding(ENCODING)
            except Exception:  # a damaged file: the plain estimate, never a crash
                break
            def count(text: str, encoding: Any = encoding) -> int:
                return len(encoding.encode(text, disallowed_special=()))

            return f"tiktoken:{ENCODING}", count
    return "chars/4", chars_per_4


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    estimated: bool


def _plausible(value: Any, limit: int) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)
            and 0 <= value <= min(limit, ABSURD_TOKENS))


def checked_usage(usage: Any, prompt_text: str, completion_text: str, *, max_tokens: int,
                  context_window: int) -> Usage:
    """The provider's usage if it is plausible, else an estimate (marked)."""
    prompt = getattr(usage, "prompt_tokens", None) if usage is not None else None
    completion = getattr(usage, "completion_tokens", None) if usage is not None else None
    ok_prompt = _plausible(prompt, 2 * context_window)
    # Reasoning tokens count as completion tokens and can dwarf the visible text, but the
    # request's own cap bounds them; an empty count for a non-empty answer is not usage.
    ok_completion = _plausible(completion, 2 * max_tokens + 1024) and not (
        completion == 0 and completion_text)
    if ok_prompt and ok_completion:
        return Usage(prompt, completion, False)
    _, count = token_counter()
    return Usage(prompt if ok_prompt else count(prompt_text),
                 completion if ok_completion else count(completion_text), True)
