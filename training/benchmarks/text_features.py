"""Prompt features from text for the benchmarks: MiniLM token counts, cheap statistics.

Embeddings live in `router_model.embeddings` (cached on disk, imported lazily).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from router_model.embeddings import model_path


@functools.lru_cache(maxsize=1)
def _tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path())


def token_counts(texts: Sequence[str]) -> np.ndarray:
    """Token counts from the local MiniLM (WordPiece) tokenizer, no truncation."""
    ids = _tokenizer()(list(texts), add_special_tokens=False, truncation=False,
                    verbose=False)["input_ids"]
    return np.array([len(i) for i in ids], dtype=float)


def text_statistics(texts: Sequence[str]) -> pd.DataFrame:
    """Cheap, model-free statistics of each prompt."""
    s = pd.Series(list(texts), dtype="string")
    chars = s.str.len().astype(float)
    return pd.DataFrame({
        "chars": chars,
        "words": s.str.split().str.len().astype(float),
        "lines": s.str.count("\n").astype(float) + 1,
        "digit_share": s.str.count(r"\d").astype(float) / chars.clip(lower=1),
        "math_symbols": s.str.count(r"[=+\-*/^<>]").astype(float),
        "questions": s.str.count(r"\?").astype(float),
        "has_code": s.str.contains(re.compile(r"def |return |\{|\};|#include|import "),
                                   regex=True).astype(float),
        "has_choices": s.str.contains(re.compile(r"\n\s*[A-D][.)] "), regex=True).astype(float),
    })
