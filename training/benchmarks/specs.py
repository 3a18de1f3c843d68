"""Where benchmark configs and outcome tables are found: the user's folders first.

A run name is a config file (`path/to/x.yaml`, relative to the working directory) or a name
looked up as `<dir>/<name>.yaml` in `benchmark_dirs`, then as `benchmark/<name>.yaml` in
every hydra config source (`--config-dir`, `hydra.searchpath`), then in the package's
`conf/benchmark`. Relative data paths resolve against the working directory.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from router_model.config import CONF_DIR


def _hydra_config_dirs() -> list[Path]:
    """File config sources of the running hydra app (none under the compose API)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [Path(s.path) for s in HydraConfig.get().runtime.config_sources
            if s.schema == "file"]


def spec_candidates(cfg: DictConfig, name: str) -> list[Path]:
    """Every place a benchmark config called `name` may live, in lookup order."""
    if name.endswith((".yaml", ".yml")):
        return [Path(name).expanduser().resolve()]
    dirs = [Path(str(d)).expanduser().resolve() for d in cfg.get("benchmark_dirs") or []]
    dirs += [d / "benchmark" for d in _hydra_config_dirs()]
    dirs.append(Path(CONF_DIR) / "benchmark")
    return [d / f"{name}.yaml" for d in dict.fromkeys(dirs)]


def load_spec(cfg: DictConfig, name: str) -> DictConfig:
    """The benchmark's config; its `name` defaults to the file's stem."""
    candidates = spec_candidates(cfg, name)
    for path in candidates:
        if path.exists():
            spec = OmegaConf.load(path)
            if not spec.get("name"):
                spec.name = path.stem
            return spec
    known = sorted({p.stem for c in candidates for p in c.parent.glob("*.yaml")})
    raise FileNotFoundError(f"no benchmark config {name!r}; looked for "
                            f"{[str(c) for c in candidates]}; known names: {known}")


def data_path(cfg: DictConfig, spec: DictConfig) -> Path:
    """The spec's `data` (a folder with long.parquet, or a Parquet file) under
    `public_data`; both resolve against the working directory when relative."""
    root = Path(str(cfg.public_data)).expanduser()
    return (root / Path(str(spec.data)).expanduser()).resolve()
