"""NumPy/OpenBLAS baseline for bench/kernels.ts (spawned by it; not meant to be run alone).

A line protocol on stdin/stdout, so the caller can alternate single repetitions of ours and
NumPy's (machine noise then hits both alike): `{"op": "setup", "case": {...}}` builds the data
and runs once to warm up; `{"op": "run"}` times one repetition and answers `{"seconds": s}`.
It does what the semdedup kernels do, the way a NumPy port would:
  pairwise: per column block [s, e) of a ranked cluster, S = Q @ C.T with C = rows [0, e-1),
            mask candidates not ranked before each query with -inf, then max and argmax;
  assign:   argmin over centroids of |x|^2 - 2 x.c + |c|^2, min clamped at 0.
Thread count comes from OPENBLAS_NUM_THREADS, set by the caller.
"""
import json
import sys
import time

import numpy as np


def unit_rows(rng, n, d):
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def pairwise(ranked, block):
    n = ranked.shape[0]
    score = np.empty(n, np.float32)
    index = np.empty(n, np.int64)
    for s in range(0, n, block):
        e = min(n, s + block)
        q = ranked[s:e]
        c = ranked[: e - 1]
        if c.shape[0] == 0:
            score[s:e] = -np.inf
            index[s:e] = -1
            continue
        sim = q @ c.T
        # candidate j is ranked before query i (global position s + i) iff j < s + i
        qpos = np.arange(s, e)[:, None]
        cpos = np.arange(c.shape[0])[None, :]
        sim[cpos >= qpos] = -np.inf
        score[s:e] = sim.max(axis=1)
        index[s:e] = sim.argmax(axis=1)
    return score, index


def assign(x, cent):
    d2 = (x * x).sum(axis=1)[:, None] - 2.0 * (x @ cent.T) + (cent * cent).sum(axis=1)[None, :]
    idx = d2.argmin(axis=1)
    return idx, np.maximum(d2[np.arange(x.shape[0]), idx], 0.0)


def make_job(case):
    rng = np.random.default_rng(case.get("seed", 1))
    d = case["dim"]
    if case["kind"] == "pairwise":
        ranked = unit_rows(rng, case["rows"], d)
        return lambda: pairwise(ranked, case["block"])
    x = unit_rows(rng, case["rows"], d)
    cent = unit_rows(rng, case["centroids"], d)
    return lambda: assign(x, cent)


def main():
    job = None
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["op"] == "setup":
            job = make_job(msg["case"])
            job()  # warm-up: first-touch pages, thread pool start
            reply = {"ok": True, "numpy": np.__version__}
        else:
            t = time.perf_counter()
            job()
            reply = {"seconds": time.perf_counter() - t}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
