#!/usr/bin/env python3
"""Latency through the Python package vs `kvant bench`, interleaved.

  PYTHONPATH=build/release/python python3 python/tools/bench_latency.py MODEL.onnx \
      [--kvant build/release/kvant] [--rounds 5] [--runs 10] [--warmup 2] [--threads 1]

Each round runs `kvant bench MODEL --runs R --warmup W --threads T` (its
median), then R timed InferenceSession.run calls after W warm-up ones in this
process (their median), on random float inputs in [-1, 1) of the declared
shape (symbolic dims 1) as kvant bench uses. Prints each round and the
median over rounds of each and the minimum over all runs, and python / bench.
"""
import argparse
import re
import statistics
import subprocess
import time

import numpy as np

import kvant


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--kvant", default="build/release/kvant")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()

    sess = kvant.InferenceSession(a.model, threads=a.threads)
    rng = np.random.default_rng(0)
    feeds = {}
    for arg in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in arg.shape]
        feeds[arg.name] = rng.uniform(-1, 1, shape).astype(np.float32)

    bench_ms, python_ms, bench_min, python_min = [], [], [], []
    for r in range(a.rounds):
        out = subprocess.run([a.kvant, "bench", a.model, "--runs", str(a.runs), "--warmup", str(a.warmup), "--threads",
                              str(a.threads)], check=True, capture_output=True, text=True).stdout
        m = re.search(r"latency\s+median ([0-9.]+) ms, p90 [0-9.]+ ms, min ([0-9.]+) ms", out)
        bench_ms.append(float(m.group(1)))
        bench_min.append(float(m.group(2)))
        for _ in range(a.warmup):
            sess.run(None, feeds)
        times = []
        for _ in range(a.runs):
            start = time.perf_counter()
            sess.run(None, feeds)
            times.append((time.perf_counter() - start) * 1e3)
        python_ms.append(statistics.median(times))
        python_min.append(min(times))
        print("round %d: median kvant bench %.3f ms, python %.3f ms; min %.3f ms, %.3f ms"
              % (r + 1, bench_ms[-1], python_ms[-1], bench_min[-1], python_min[-1]), flush=True)
    b, py = statistics.median(bench_ms), statistics.median(python_ms)
    print("median of the %d rounds' medians: kvant bench %.3f ms, python %.3f ms, python / bench = %.4f"
          % (a.rounds, b, py, py / b))
    b, py = min(bench_min), min(python_min)
    print("minimum over all runs:            kvant bench %.3f ms, python %.3f ms, python / bench = %.4f"
          % (b, py, py / b))


if __name__ == "__main__":
    main()
