"""`course-inputs`: write N varied analysis_result files drawn from the world's distributions.

The same draws and the same writer as `router-simulate` (pipeline/world/courses.py): the
courses a user generates with `course-generate` come from the world the router's training
logs were simulated from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from pipeline.generator.inputs import parse_analysis_result
from pipeline.world.courses import as_json, course_results
from pipeline.world.settings import WorldSettings, world_settings
from pipeline.world.simulate import world_course_ids
from pipeline.world.tasks import simulate_courses
from router_model.cli_errors import user_errors
from router_model.config import CONF_DIR, check, typed


@dataclass(frozen=True)
class InputsSettings:
    """`inputs` in conf/course_inputs.yaml (the file says what each means)."""

    n: int
    out_dir: str
    seed: int

    def __post_init__(self) -> None:
        check(self.n >= 1, "inputs.n", self.n, "must be >= 1")


def write_inputs(world: WorldSettings, n: int, out_dir: str | Path, seed: int) -> list[Path]:
    """Draw `n` courses of the world with `seed` and write one analysis_result file each;
    every file is validated as course-generate reads it."""
    world = replace(world, seed=seed)
    courses = simulate_courses(world, n, np.random.default_rng(seed))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for result in course_results(courses, world_course_ids(seed, n), world):
        data = as_json(result)
        parse_analysis_result(data)  # what course-generate will accept
        path = out / f"{result.course_id}.json"
        path.write_text(json.dumps(data, indent=1, ensure_ascii=False))
        written.append(path)
    return written


@hydra.main(config_path=CONF_DIR, config_name="course_inputs", version_base="1.3")
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    with user_errors("course-inputs"):
        settings = typed(InputsSettings, cfg.inputs, "inputs")
        paths = write_inputs(world_settings(cfg.simulate), settings.n, settings.out_dir,
                             settings.seed)
    print(f"course-inputs: wrote {len(paths)} analysis_result files to {settings.out_dir} "
          f"(world seed {settings.seed}); generate them with: course-generate "
          f"{settings.out_dir}")
