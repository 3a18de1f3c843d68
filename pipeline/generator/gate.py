"""The similarity gate: MiniLM cosine similarity between an output and its reference brief.

The model is loaded once per process (shared with the router's optional embedding feature).
A text's vector is computed once: remembered here for the run, and stored and looked up on
disk by router_model/model/embeddings.py, the one embedding cache (training's brief
embeddings use it too). The gate batches the texts of every attempt waiting at the same
moment into one model call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from router_model.model.embeddings import embed, read_cache


class Embedder:
    """Normalised MiniLM vectors by text: the embedding cache under `cache_dir` (None: memory
    only), read once and then kept in memory for the run."""

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self.cache_dir = cache_dir
        self.memory: dict[str, np.ndarray] | None = None  # read on first use
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:  # the simulator's thread and the generator share one model
            if self.memory is None:
                self.memory = read_cache(self.cache_dir)
            return embed(list(texts), self.cache_dir, progress=False, known=self.memory)

    def similarity(self, outputs: Sequence[str], references: Sequence[str]) -> np.ndarray:
        """Cosine similarity of each output with its reference, one model call for all."""
        if not outputs:
            return np.zeros(0)
        vectors = self.encode([*outputs, *references])
        n = len(outputs)
        return np.clip(np.einsum("ij,ij->i", vectors[:n], vectors[n:]), 0.0, 1.0)


class BatchingGate:
    """Collects concurrent similarity requests for `wait_s` and scores them in one batch."""

    def __init__(self, embedder: Embedder, wait_s: float = 0.002) -> None:
        self.embedder = embedder
        self.wait_s = wait_s
        self._pending: list[tuple[list[str], list[str], asyncio.Future[np.ndarray]]] = []
        self._flush: asyncio.Task[None] | None = None

    async def similarity(self, outputs: list[str], references: list[str]) -> np.ndarray:
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append((outputs, references, future))
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        """Score batches until nothing waits: requests arriving mid-batch form the next one."""
        while self._pending:
            await asyncio.sleep(self.wait_s)
            batch, self._pending = self._pending, []
            await self._score(batch)

    async def _score(self, batch: list[tuple[list[str], list[str], asyncio.Future[np.ndarray]]]
                     ) -> None:
        outputs = [t for o, _, _ in batch for t in o]
        references = [t for _, r, _ in batch for t in r]
        try:
            scores = await asyncio.to_thread(self.embedder.similarity, outputs, references)
        except Exception as exc:  # every waiter must hear about it, not just the first
            for *_, future in batch:
                future.set_exception(exc)
            return
        start = 0
        for o, _, future in batch:
            future.set_result(scores[start:start + len(o)])
            start += len(o)
