"""Prompt features from text for the benchmarks: MiniLM token counts, cheap statistics and
the embedding of the part of each prompt that distinguishes it.

MiniLM reads at most 256 word pieces. Few-shot prompts share a long common head, so
embedding the head gives many prompts one identical vector; `embedding.text` picks `head`,
`tail` (the last window) or `chunks` (the mean over consecutive windows, renormalised).
Embeddings live in `router_model.model.embeddings` (cached on disk, imported lazily).
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from router_model.model.embeddings import embed, model_path
from training.benchmarks.settings import EmbeddingSettings

TEXT_MODES = ("head", "tail", "chunks")


@functools.lru_cache(maxsize=1)
def _tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path())


def _offsets(texts: Sequence[str]) -> list[list[tuple[int, int]]]:
    """Character span of each word piece, no truncation, no special tokens."""
    return _tokenizer()(list(texts), add_special_tokens=False, truncation=False,
                        return_offsets_mapping=True, verbose=False)["offset_mapping"]


def token_counts(texts: Sequence[str]) -> np.ndarray:
    """Token counts from the local MiniLM (WordPiece) tokenizer, no truncation."""
    return np.array([len(o) for o in _offsets(texts)], dtype=float)


def windows(text: str, offsets: list[tuple[int, int]], size: int, mode: str) -> list[str]:
    """The parts of `text` to embed: its first window (`head`, as MiniLM truncates), its last
    (`tail`), or every consecutive window of `size` word pieces (`chunks`)."""
    if mode not in TEXT_MODES:
        raise ValueError(f"embedding.text={mode!r}: expected one of {TEXT_MODES}")
    if len(offsets) <= size or mode == "head":
        return [text]
    if mode == "tail":
        return [text[offsets[-size][0]:]]
    return [text[offsets[i][0]:offsets[min(i + size, len(offsets)) - 1][1]]
            for i in range(0, len(offsets), size)]


def embed_prompts(texts: Sequence[str], settings: EmbeddingSettings, cache_dir: str | None,
                  progress: bool) -> np.ndarray:
    """One normalised vector per prompt: the chosen window's embedding, or the mean of its
    windows' embeddings."""
    size = settings.window_tokens
    parts = [windows(t, o, size, settings.text) for t, o in zip(
        texts, _offsets(texts), strict=True)]
    flat = [p for ps in parts for p in ps]
    vectors = embed(flat, cache_dir, progress=progress)
    owner = np.repeat(np.arange(len(parts)), [len(ps) for ps in parts])
    sums = np.zeros((len(parts), vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, vectors)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.maximum(norms, 1e-12)).astype(np.float32)


def collapsed_families(texts: Sequence[str], families: Sequence[str], vectors: np.ndarray,
                       share: float) -> dict[str, dict[str, int]]:
    """Families where distinct prompts share identical embeddings: kNN then picks among ties
    and every model sees one point. Warns when the lost share of distinct texts >= `share`."""
    frame = pd.DataFrame({"family": list(families), "text": list(texts),
                          "vector": [v.round(5).tobytes() for v in vectors]})
    counts = frame.groupby("family").agg(texts=("text", "nunique"), vectors=("vector",
                                                                             "nunique"))
    lost = counts[(counts["texts"] - counts["vectors"]) >= share * counts["texts"]]
    found = {str(f): {"distinct_prompts": int(r.texts), "distinct_embeddings": int(r.vectors)}
             for f, r in lost.iterrows()}
    if found:
        shown = dict(list(found.items())[:5])
        warnings.warn(f"collapsed embeddings in {len(found)} families (e.g. {shown}): many "
                      "distinct prompts share one vector; try embedding.text=tail or chunks",
                      stacklevel=2)
    return found


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


def prompt_features(prompts: pd.DataFrame, settings: EmbeddingSettings, cache_dir: str | None,
                    progress: bool) -> pd.DataFrame:
    """One row per prompt: family, MiniLM token count, text statistics, embedding. The
    frame's attrs carry the collapsed families found."""
    texts = prompts["prompt"].tolist()
    frame = pd.DataFrame({"prompt_id": prompts["prompt_id"].to_numpy(),
                          "field": prompts["family"].to_numpy(),
                          "prompt_tokens": token_counts(texts),
                          "context_tokens": 0.0, "expected_output_tokens": np.nan})
    frame = pd.concat([frame, text_statistics(texts).add_prefix("analysis.")], axis=1)
    vectors = embed_prompts(texts, settings, cache_dir, progress)
    frame["embedding"] = list(vectors)
    frame.attrs["collapsed"] = collapsed_families(texts, prompts["family"], vectors,
                                                  settings.collapse_warn_share)
    return frame
