"""Shared by the generator tests: a provider simulator in a thread, configs, synthetic inputs."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.generator.gate import Embedder
from pipeline.provider_sim.cli import build_simulator, serve_in_thread
from pipeline.provider_sim.server import ProviderSimulator
from tests.helpers import REPO, compose_config, tmp_paths

EXAMPLES = REPO / "data" / "examples"


@contextlib.contextmanager
def simulator(embedder: Embedder | None = None, overrides: list[str] | None = None,
              **settings: Any) -> Iterator[tuple[str, ProviderSimulator]]:
    """A real simulator on a free loopback port: (base_url, simulator). It embeds nothing
    (it writes text); `embedder` is accepted for the callers that pass theirs. `overrides`:
    config overrides (e.g. of its world, `simulate.*`)."""
    cfg = compose_config("provider_sim", overrides or [])
    sim = build_simulator(cfg, **settings)
    url, server = serve_in_thread(sim)
    try:
        yield url, sim
    finally:
        server.should_exit = True


# A gate that is its raw MiniLM cosine with the brief (no map, injection guard only): a test
# that needs one item to pass and another to fail makes them so without a fitted map.
RAW_COSINE_GATE = ("gate.scorer=brief_cosine", "gate.calibration_map=null",
                   "gate.guards=[injection]")


# The calibrated gate on one vector per item (the brief's is cached): the loop tests generate
# well over a hundred courses, and the default combo embeds up to 14 texts per item, which
# made them the slowest part of the suite. What they test (the loop) does not depend on
# which calibrated scorer the gate uses.
ONE_VECTOR_GATE = ("gate.scorer=brief_cosine",)


def generate_config(tmp: Path, url: str, *overrides: str) -> DictConfig:
    """course_generate against `url`, everything written under `tmp`, rules by default."""
    cfg = compose_config("course_generate", [
        *tmp_paths(tmp), f"provider.base_url={url}", "provider.fallback.base_url=null",
        "generate.progress=false",
        "serve.artifact=null", f"generate.out_dir={tmp}/out", "generate.embedding_cache=null",
        *overrides])
    OmegaConf.resolve(cfg)
    return cfg


def synthetic_result(i: int, seed: int = 0, sections: tuple[int, int] = (2, 3)
                     ) -> dict[str, Any]:
    """A small, varied analysis_result (domains, levels, languages, complexity differ)."""
    rnd = random.Random(seed * 100_003 + i)
    example = json.loads((EXAMPLES / "typical.json").read_text())
    topics = ["Python programming", "Linear algebra", "Cell biology", "Marketing basics",
              "Renaissance art", "Spanish for travel", "Nutrition science", "World history"]
    domains = ["programming", "mathematics", "science", "business", "arts",
               "language_learning", "health", "humanities"]
    k = rnd.randrange(len(topics))
    n_sections = rnd.randint(*sections)
    example["sections"] = [
        {**s, "lessons": s["lessons"][: rnd.randint(2, 3)]}
        for s in rnd.sample(example["sections"], n_sections)]
    example.update(
        course_id=f"syn-{seed}-{i:04d}", topic=topics[k],
        source_material=example["source_material"][: rnd.randint(8_000, 80_000)],
        analysis={"domain": domains[k],
                  "audience_level": rnd.choice(["beginner", "intermediate", "advanced",
                                                "expert"]),
                  "language": rnd.choice(["en", "en", "en", "es", "de", "zh", "ja"]),
                  "complexity": round(rnd.betavariate(2, 3), 3),
                  "analysis_completeness": round(rnd.betavariate(6, 2), 3)})
    return example
