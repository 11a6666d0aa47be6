"""Load on serve.py over loopback: requests/s and p50/p95/p99 latency for 1, 8 and 32 concurrent clients,
with LitServe's dynamic batching (conf/serve.yaml's max_batch_size and batch_timeout) and without it
(max_batch_size=1), on the tiny demo model (the base qwen2vl_tiny, zero-shot: the decoder's work is the
same as a fine-tuned run's). Each client sends one demo test item per request.

    python benchmarks/serve_load.py --out serve_load.json [--requests 96] [--decoding generate] [--set batch_timeout=0.05]

Bounded: `--requests` per concurrency level (after `--warmup`), and `--max-seconds` per level; traffic
goes only to 127.0.0.1."""

from __future__ import annotations

import argparse
import base64
import csv
import json
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from mmlearn.data.demo import build_demo
from mmlearn.serving.local import LocalServer

CONCURRENCY = (1, 8, 32)


def demo_items(root: Path) -> list[dict]:
    rows = list(csv.DictReader((root / "test.csv").open()))
    return [
        {"text": r["text"], "image": base64.b64encode((root / r["image_path"]).read_bytes()).decode()}
        for r in rows
    ]


def post(url: str, item: dict, headers: dict | None = None) -> float:
    """Seconds for one /v1/classify round trip; raises on a non-200."""
    request = urllib.request.Request(
        f"{url}/v1/classify", data=json.dumps(item).encode(), headers=headers or {}
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=300) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
    return time.perf_counter() - start


def drive(
    url: str, items: list[dict], clients: int, requests: int, max_seconds: float, headers: dict | None = None
) -> dict:
    """`requests` requests shared by `clients` threads, each sending its next one when answered."""
    latencies, errors, lock = [], [], threading.Lock()
    counter = iter(range(requests))
    deadline = time.monotonic() + max_seconds

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            try:
                seconds = post(url, items[n % len(items)], headers)
            except Exception as err:  # counted, not fatal: the figures say how many failed
                with lock:
                    errors.append(repr(err))
                continue
            with lock:
                latencies.append(seconds)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return summary(latencies, errors, wall, clients)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(latencies: list[float], errors: list[str], wall: float, clients: int) -> dict:
    if not latencies:
        return {"clients": clients, "requests": 0, "errors": len(errors), "first_error": errors[:1]}
    ms = [1000 * s for s in latencies]
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "seconds": round(wall, 3),
        "requests_per_second": round(len(latencies) / wall, 3),
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
    }


def measure(overrides: list[str], items: list[dict], args, log: Path) -> dict:
    server = LocalServer(overrides, log).wait_ready()
    try:
        for item in items[: args.warmup]:
            post(server.url, item)
        return {str(c): drive(server.url, items, c, args.requests, args.max_seconds) for c in CONCURRENCY}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, type=Path, help="where the JSON figures go")
    parser.add_argument("--requests", type=int, default=96, help="requests per concurrency level")
    parser.add_argument("--warmup", type=int, default=4, help="requests before timing, per server")
    parser.add_argument("--max-seconds", type=float, default=120, help="time bound per concurrency level")
    parser.add_argument(
        "--decoding", default="generate", help="the decoder served (generate|constrained|score)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        help="a serve.py override for both servers: --set batch_timeout=0.05",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="serve_load-"))
    root = build_demo(work / "demo", splits={"train": 2, "val": 2, "test": 32}, image_size=56, seed=0)
    items = demo_items(root)
    base = ["model=qwen2vl_tiny", "data=demo", f"data.root={root}", f"decoding={args.decoding}", *args.set]
    results = {
        "settings": {
            "requests_per_level": args.requests,
            "decoding": args.decoding,
            "concurrency": list(CONCURRENCY),
        },
        "dynamic_batching": measure(base, items, args, work / "dynamic.log"),
        "max_batch_size_1": measure([*base, "max_batch_size=1"], items, args, work / "single.log"),
    }
    dynamic, single = results["dynamic_batching"]["32"], results["max_batch_size_1"]["32"]
    if dynamic.get("requests") and single.get("requests"):
        results["batching_speedup_32"] = round(
            dynamic["requests_per_second"] / single["requests_per_second"], 2
        )
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    shutil.rmtree(work)  # kept (demo data, server logs) when a server failed to start


if __name__ == "__main__":
    main()
