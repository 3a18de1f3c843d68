"""Benchmark: the HTTP service under wrk, next to a bare FastAPI + LightGBM endpoint.

Both servers run under one uvicorn worker on 127.0.0.1, with wrk on the same 2 cores
(`apt-get install wrk`). Also measured: /v1/route/batch with 50 tasks, and the in-process
client. Needs a trained artifact (`make demo` or `router-train`).

    .venv/bin/python perf/serve_speed.py [--seconds 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from router_model.policy import EXAMPLE_TASK

ROOT = Path(__file__).resolve().parents[1]
TASK = EXAMPLE_TASK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=0.5)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{cmd} did not start: {proc.stderr.read().decode()[-2000:]}")


def wrk(url: str, body: dict, seconds: int, connections: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                     f"wrk.body = {json.dumps(json.dumps(body))}\n")
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", script.name, url], capture_output=True, text=True,
                         check=True).stdout
    os.unlink(script.name)

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": ms("50"), "p99_ms": ms("99"),
            "errors": float(errors.group(1)) if errors else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    artifact = str(ROOT / "artifacts" / "router")
    bin_dir = Path(sys.executable).parent
    tmp = tempfile.mkdtemp()
    route_port, bare_port = free_port(), free_port()
    router = start([str(bin_dir / "router-serve"), f"serve.port={route_port}",
                    f"serve.artifact={artifact}", f"serve.decision_log={tmp}/d.jsonl",
                    "serve.reload_poll_s=0"], route_port, {})
    bare = start([str(bin_dir / "uvicorn"), "perf.bare_app:app", "--port", str(bare_port),
                  "--log-level", "warning"], bare_port, {"BENCH_ARTIFACT": artifact})
    try:
        base = f"http://127.0.0.1:{route_port}"
        assert httpx.post(f"{base}/v1/route", json=TASK).json()["source"] == "learned"
        wrk(f"{base}/v1/route", TASK, 2, args.connections)  # warm-up
        ours = wrk(f"{base}/v1/route", TASK, args.seconds, args.connections)
        ref = wrk(f"http://127.0.0.1:{bare_port}/predict", TASK, args.seconds, args.connections)
        batch = wrk(f"{base}/v1/route/batch", {"tasks": [TASK] * 50}, args.seconds, 4)
    finally:
        router.terminate()
        bare.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrk -t1 -c{args.connections} -d{args.seconds}s, one uvicorn worker each, 2 cores")
    print(f"POST /v1/route           {ours['rps']:8.0f} req/s  p50 {ours['p50_ms']:.2f} ms  "
          f"p99 {ours['p99_ms']:.2f} ms  errors {ours['errors']:.0f}  "
          f"(target >= 3000 req/s, p99 <= 10 ms)")
    print(f"bare FastAPI + LightGBM  {ref['rps']:8.0f} req/s  p50 {ref['p50_ms']:.2f} ms  "
          f"p99 {ref['p99_ms']:.2f} ms")
    print(f"ratio ours / bare: throughput {ours['rps'] / ref['rps']:.2f}, "
          f"p99 {ours['p99_ms'] / ref['p99_ms']:.2f}")
    print(f"POST /v1/route/batch x50 {batch['rps']:8.0f} req/s = {batch['rps'] * 50:,.0f} tasks/s"
          f"  p99 {batch['p99_ms']:.2f} ms")
    in_process()


def in_process() -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from router_model.client import LocalRouterClient
    from router_model.config import CONF_DIR
    from router_model.serving import RouterService

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="router_serve", overrides=["serve.decision_log=null"])
    OmegaConf.resolve(cfg)
    client = LocalRouterClient(RouterService.from_config(cfg))
    for _ in range(300):
        client.route(TASK)
    times = []
    started = time.perf_counter()
    for _ in range(5000):
        t = time.perf_counter_ns()
        client.route(TASK)
        times.append((time.perf_counter_ns() - t) / 1000)
    rate = 5000 / (time.perf_counter() - started)
    print(f"in-process client: {rate:,.0f} decisions/s  p50 {np.median(times):.0f} us  "
          f"p99 {np.percentile(times, 99):.0f} us")


if __name__ == "__main__":
    main()
