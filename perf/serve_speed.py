"""Benchmark: the HTTP service under load, next to a bare FastAPI + LightGBM endpoint.

Every server runs on 127.0.0.1 with the load generator on the same cores: wrk when it is
installed (`apt-get install wrk`), else a small asyncio HTTP/1.1 client (keep-alive, one
request in flight per connection; it costs more CPU than wrk, so its absolute numbers are
lower, but the ratio to the bare endpoint, measured the same way in the same run, holds).
Measured: POST /v1/route with one and two uvicorn workers, /v1/route/batch with 50 tasks,
and the bare endpoint (perf/bare_app.py). Needs a trained artifact.

    .venv/bin/python perf/serve_speed.py [--seconds 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

from router_model.contract import EXAMPLE_TASK

ROOT = Path(__file__).resolve().parents[1]
TASK = EXAMPLE_TASK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(cmd: list[str], port: int, env: dict[str, str]) -> Iterator[str]:
    """Start a server, wait until it answers, yield its URL, stop it."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/docs", timeout=0.5)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{cmd} did not start: "
                                       f"{proc.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


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


def python_load(url: str, body: dict, seconds: int, connections: int) -> dict[str, float]:
    """wrk's measurement with asyncio streams: `connections` keep-alive connections, each
    sending the next request when the last answer is in."""
    host, port, path = re.match(r"http://([^:/]+):(\d+)(/.*)", url).groups()
    payload = json.dumps(body).encode()
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
    latencies: list[float] = []
    errors = 0

    async def connection(stop: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        while time.perf_counter() < stop:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            errors += not head.startswith(b"HTTP/1.1 200")
        writer.close()

    async def run() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(connection(started + seconds) for _ in range(connections)))
        return time.perf_counter() - started

    wall = asyncio.run(run())
    ms = np.array(latencies) * 1000
    return {"rps": len(ms) / wall, "p50_ms": float(np.median(ms)),
            "p99_ms": float(np.percentile(ms, 99)), "errors": float(errors)}


def load(url: str, body: dict, seconds: int, connections: int) -> dict[str, float]:
    return (wrk if shutil.which("wrk") else python_load)(url, body, seconds, connections)


def serve_figures(seconds: int, connections: int, artifact: str, cache: str
                  ) -> dict[str, dict[str, float] | str]:
    """Route (one and two workers), batch x50 and the bare endpoint, in one run."""
    bin_dir = Path(sys.executable).parent
    tmp = tempfile.mkdtemp()
    out: dict[str, dict[str, float] | str] = {
        "generator": "wrk" if shutil.which("wrk") else "python asyncio"}

    def router(workers: int) -> tuple[list[str], int]:
        port = free_port()
        return [str(bin_dir / "router-serve"), f"serve.port={port}", f"serve.workers={workers}",
                f"serve.artifact={artifact}", f"serve.decision_log={tmp}/w{workers}/d.jsonl",
                f"serve.compiled_cache={cache}", "serve.reload_poll_s=0"], port

    def all_workers_up(workers: int) -> None:
        """The first worker answers while the others still start: wait for every worker's
        own decision log (`d.<pid>.jsonl`, opened when its service is built)."""
        deadline = time.monotonic() + 120
        while len(list(Path(tmp, f"w{workers}").glob("d.*.jsonl"))) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} workers did not all start")
            time.sleep(0.2)

    try:
        port = free_port()
        with server([str(bin_dir / "uvicorn"), "perf.bare_app:app", "--port", str(port),
                     "--log-level", "warning"], port, {"BENCH_ARTIFACT": artifact}) as url:
            load(f"{url}/predict", TASK, 2, connections)  # warm-up
            out["bare"] = load(f"{url}/predict", TASK, seconds, connections)
        for workers in (1, 2):
            cmd, port = router(workers)
            with server(cmd, port, {}) as url:
                if workers > 1:
                    all_workers_up(workers)
                assert httpx.post(f"{url}/v1/route", json=TASK).json()["source"] == "learned"
                load(f"{url}/v1/route", TASK, 2, connections)  # warm-up
                out[f"route_{workers}w"] = load(f"{url}/v1/route", TASK, seconds, connections)
                if workers == 1:
                    out["batch50"] = load(f"{url}/v1/route/batch", {"tasks": [TASK] * 50},
                                          seconds, 4)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        out = serve_figures(args.seconds, args.connections, str(ROOT / "artifacts" / "router"),
                            cache)
    print(f"load generator: {out.pop('generator')}, -c{args.connections} -d{args.seconds}s")
    for name, r in out.items():
        print(f"{name:>10}: {r['rps']:8.0f} req/s  p50 {r['p50_ms']:.2f} ms  "
              f"p99 {r['p99_ms']:.2f} ms  errors {r['errors']:.0f}")


if __name__ == "__main__":
    main()
