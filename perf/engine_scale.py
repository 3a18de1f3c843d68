"""Benchmark (issue 16): router-train's local and Dask engines on 1M, 5M and 20M attempt rows.

Logs are simulated once, in chunks of about 1M rows (one seed per chunk, so course ids never
collide), into a hive-partitioned Parquet dataset `<workdir>/logs/chunk=NN/date=.../`; a size
of k million rows trains on the first k chunks, chosen by a glob. Each training runs in a fresh
process; a sampler thread records the peak resident memory of that process and of every
process it starts (the Dask workers), so the table shows the peak per process next to the time
and the held-out log-loss. Nothing here is asserted: the numbers are printed and written as
JSON for the README.

    .venv/bin/python perf/engine_scale.py --workdir /work/scale --rows 1 5 20
    .venv/bin/python perf/engine_scale.py --workdir /work/scale --rows 1 --engines local dask
    .venv/bin/python perf/engine_scale.py --workdir /work/scale --report docs/engine_scale.png
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from router_model.config import CONF_DIR

COURSES_PER_CHUNK = 33_000  # about 1M attempt rows at the default world
COURSES_PER_DAY = 3_300     # 100k courses a month, the platform


def compose_cfg(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg


def simulate_chunks(workdir: Path, chunks: int) -> None:
    """Write chunk folders 0..chunks-1 that do not exist yet (each about 1M rows)."""
    from pipeline.simulate_cli import run_simulate

    for i in range(chunks):
        folder = workdir / "logs" / f"chunk={i:02d}"
        if folder.exists() and any(folder.rglob("*.parquet")):
            continue
        start = time.perf_counter()
        run_simulate(compose_cfg("router_simulate", [
            f"paths.data_dir={workdir}/scratch", f"paths.logs='{folder}'",
            f"simulate.n_courses={COURSES_PER_CHUNK}", f"simulate.seed={1000 + i}",
            f"simulate.courses_per_day={COURSES_PER_DAY}"]))
        print(f"chunk {i}: {time.perf_counter() - start:.0f} s", flush=True)


class PeakMemory:
    """Peak RSS per process of this process tree, sampled every `interval` seconds."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.peaks: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            for proc in [me, *me.children(recursive=True)]:
                try:
                    rss = proc.memory_info().rss / 2**20
                    role = "client" if proc.pid == me.pid else " ".join(proc.cmdline()[-2:])
                except psutil.Error:
                    continue
                old = self.peaks.get(proc.pid, ("", 0.0))[1]
                self.peaks[proc.pid] = (role[:60], max(old, rss))
            self._stop.wait(self.interval)


LOCAL_ADDRESS_SPACE_GB = 22  # the local engine's limit, so running out is a MemoryError,
                             # not the kernel's OOM killer picking a process on a shared box


def child(workdir: str, engine: str, millions: int) -> None:
    """One training in this fresh process: time, peak memory per process, held-out log-loss."""
    import resource

    from training.train import run_train
    from training.train_cli import train_job

    if engine == "local":
        limit = LOCAL_ADDRESS_SPACE_GB * 2**30
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    chunks = [f"'{workdir}/logs/chunk={i:02d}'" for i in range(millions)]
    cfg = compose_cfg("router_train", [
        f"paths.data_dir={workdir}/scratch", f"paths.artifacts_dir={workdir}/artifacts",
        f"paths.reports_dir={workdir}/reports/{engine}-{millions}M",
        f"paths.cache_dir={workdir}/cache/{engine}-{millions}M",  # empty: examples are built
        f"paths.logs=[{','.join(chunks)}]", f"train.engine={engine}", "train.split=hash",
        "train.baseline=null", "router.calibrate.weighted_bad_vs_static=true"])
    with PeakMemory() as peaks:
        start = time.perf_counter()
        try:
            result = run_train(train_job(cfg), progress=False)
        except MemoryError as exc:
            where = traceback.extract_tb(exc.__traceback__)
            repo = str(Path(__file__).resolve().parents[1])
            ours = [f for f in where if f.filename.startswith(repo)][-1]
            peaks.__exit__()
            print(json.dumps({"engine": engine, "millions": millions, "failed": (
                f"MemoryError after {time.perf_counter() - start:.0f} s under a "
                f"{LOCAL_ADDRESS_SPACE_GB} GB address-space limit, in {ours.name} "
                f"({Path(ours.filename).name}:{ours.lineno}), resident peak "
                f"{max(m for _, m in peaks.peaks.values()) / 1024:.1f} GB")}))
            return
        seconds = time.perf_counter() - start
    processes = sorted(peaks.peaks.values(), key=lambda p: -p[1])
    print(json.dumps({
        "engine": engine, "millions": millions, "seconds": round(seconds, 1),
        "rows": result.metrics["data"]["valid"], "examples": result.metrics["data"]["examples"],
        "log_loss": result.metrics["overall"]["log_loss"],
        "test_examples": result.metrics["data"]["test_examples"],
        "peak_mb_per_process": [[r, round(m)] for r, m in processes],
        "phases": result.seconds}))


def markdown_table(rows: list[dict]) -> str:
    """The side-by-side table: time, peak memory of the largest process, held-out log-loss."""
    lines = ["| rows | engine | seconds | peak MB, largest process | peak MB, all processes "
             "| held-out log-loss | held-out examples |", "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["millions"], r["engine"])):
        if "failed" in r:
            lines.append(f"| {r['millions']}M | {r['engine']} | {r['failed']} | | | | |")
            continue
        peaks = [m for _, m in r["peak_mb_per_process"]]
        lines.append(f"| {r['rows']:,} | {r['engine']} | {r['seconds']:.0f} | {max(peaks):,} "
                     f"| {sum(peaks):,} | {r['log_loss']:.4f} | {r['test_examples']:,} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Time and largest-process memory against rows, one line per engine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for engine in sorted({r["engine"] for r in rows}):
        done = sorted((r for r in rows if r["engine"] == engine and "failed" not in r),
                      key=lambda r: r["rows"])
        x = [r["rows"] / 1e6 for r in done]
        axes[0].plot(x, [r["seconds"] for r in done], "o-", label=engine)
        axes[1].plot(x, [max(m for _, m in r["peak_mb_per_process"]) / 1024 for r in done],
                     "o-", label=engine)
    axes[0].set(xlabel="attempt rows (millions)", ylabel="seconds", title="router-train time")
    axes[1].set(xlabel="attempt rows (millions)", ylabel="GB",
                title="peak memory of the largest process")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/stage5-scale")
    parser.add_argument("--rows", type=int, nargs="*", default=[1, 5, 20],
                        help="sizes in millions of attempt rows")
    parser.add_argument("--engines", nargs="*", default=["local", "dask"])
    parser.add_argument("--simulate-only", action="store_true")
    parser.add_argument("--report", metavar="PNG",
                        help="only print the table of <workdir>/engine_scale.jsonl and plot it")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    workdir = Path(args.workdir)
    if args.report:
        rows = [json.loads(x) for x in (workdir / "engine_scale.jsonl").read_text().splitlines()]
        print(markdown_table(rows))
        plot(rows, Path(args.report))
        return
    simulate_chunks(workdir, max(args.rows))
    if args.simulate_only:
        return
    out = workdir / "engine_scale.jsonl"
    for millions in args.rows:
        for engine in args.engines:
            cmd = [sys.executable, __file__, "--child", str(workdir), engine, str(millions)]
            done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
            if done.returncode != 0:
                row = {"engine": engine, "millions": millions,
                       "failed": f"exit {done.returncode} (see stderr above)"}
            else:
                row = json.loads(done.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            with out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
