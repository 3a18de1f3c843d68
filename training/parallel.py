"""Independent runs of the orchestrating commands (seeds, deployments, trials, folds), side
by side with joblib when `n_jobs` > 1.

Each run has its own seeds and its own folder and shares nothing with the others, so its
numbers do not depend on `n_jobs`; n_jobs=1 (the default in conf/) runs them one by one in
this process, and every run's LightGBM keeps its own thread count either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tqdm.auto import tqdm


def run_each(fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], n_jobs: int,
             desc: str, progress: bool = True) -> list[Any]:
    """`fn(*args)` for every `args` in `calls`, in order, with a progress bar."""
    from joblib import Parallel, delayed

    results = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(fn)(*args) for args in calls)
    return list(tqdm(results, total=len(calls), desc=desc, disable=not progress))
