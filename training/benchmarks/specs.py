"""Where benchmark configs and outcome tables are found: the user's folders first.

A run name is a config file (`path/to/x.yaml`, relative to the working directory) or a name
looked up as `<dir>/<name>.yaml` in `benchmark_dirs`, then as `benchmark/<name>.yaml` in
every hydra config source (`--config-dir`, `hydra.searchpath`), then in the package's
`conf/benchmark`. Relative data paths resolve against the working directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from router_model.config import CONF_DIR
from training.benchmarks.settings import BenchmarkSpec


def spec_candidates(benchmark_dirs: Sequence[str], config_dirs: Sequence[Path], name: str
                    ) -> list[Path]:
    """Every place a benchmark config called `name` may live, in lookup order: the user's
    `benchmark_dirs`, `benchmark/` of each hydra config source, then the package's."""
    if name.endswith((".yaml", ".yml")):
        return [Path(name).expanduser().resolve()]
    dirs = [Path(str(d)).expanduser().resolve() for d in benchmark_dirs]
    dirs += [d / "benchmark" for d in config_dirs]
    dirs.append(Path(CONF_DIR) / "benchmark")
    return [d / f"{name}.yaml" for d in dict.fromkeys(dirs)]


def spec_file(benchmark_dirs: Sequence[str], config_dirs: Sequence[Path], name: str) -> Path:
    """The first benchmark config called `name`; a missing one lists the names known."""
    candidates = spec_candidates(benchmark_dirs, config_dirs, name)
    for path in candidates:
        if path.exists():
            return path
    known = sorted({p.stem for c in candidates for p in c.parent.glob("*.yaml")})
    raise FileNotFoundError(f"no benchmark config {name!r}; looked for "
                            f"{[str(c) for c in candidates]}; known names: {known}")


def data_path(public_data: str, spec: BenchmarkSpec) -> Path:
    """The spec's `data` (a folder with long.parquet, or a Parquet file) under
    `public_data`; both resolve against the working directory when relative."""
    root = Path(str(public_data)).expanduser()
    return (root / Path(str(spec.data)).expanduser()).resolve()
