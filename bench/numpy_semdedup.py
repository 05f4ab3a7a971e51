#!/usr/bin/env python3
"""NumPy + pyarrow port of semdedup's batch algorithm (NeMo Curator semantic-dedup semantics).

The competitor and reference for `semdedup run`: same algorithm, same input, same output layout
(docs: /work/shared/DESIGN.md). Everything is held in memory, as a plain NumPy port would.

    python3 bench/numpy_semdedup.py --input DATA/ --output OUT --n-clusters 50 \
        [--centroids C.npy] [--eps 0.01] [--max-iter 30 --tol 0 --seed 42]
    python3 bench/numpy_semdedup.py --self-test

Threads: BLAS threading is left to the environment (the benchmark harness sets
OPENBLAS_NUM_THREADS=2).

Semantics, step by step:
  read       Parquet files (a folder is searched recursively for *.parquet, globs expanded,
             files in sorted order); rows with a null/empty/repeated id or a null, wrong-length,
             non-finite or zero embedding are refused and written to rejected/.
  normalize  x / |x| with the norm summed in float64, result rounded to float32.
  kmeans     given --centroids, or k-means++ (numpy default_rng(seed)) then Lloyd's for
             --max-iter iterations; --tol 0 runs them all, tol > 0 stops when the inertia
             improves by at most tol * inertia. Empty clusters keep their previous centroid.
             Nearest centroid = argmin over k of |c|^2 - 2 x.c (float32), first index on ties.
  assign     l2_dist_to_cent = |x - c|, cosine_dist_to_cent = 1 - x.c/|c|, float64 -> float32.
  rank       per cluster; hard: dist desc, id desc; easy: dist asc, id asc (dist = cosine, or l2
             with --distance-metric l2); string ids by UTF-8 bytes, integer ids numerically.
  pairwise   per cluster, in blocks of --pairwise-batch-size clips: max similarity with every
             clip ranked before, first index on ties; no earlier clip, or a max < 0, gives
             score 0 and max_id = the clip itself (NeMo zeroes the masked triangle).
  duplicates cosine_sim_score >= 1 - eps (the float32 score compared in float64).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

READ_BATCH_ROWS = 16384
ASSIGN_CHUNK_ROWS = 8192
WRITE_ROW_GROUP_ROWS = 16384


class InputError(Exception):
    """The user's data or flags are wrong; printed without a traceback."""


# ----------------------------------------------------------------------------- timing


@dataclass
class PhaseTimer:
    timings: dict = field(default_factory=dict)

    def phase(self, name: str):
        timer = self

        class _Phase:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.timings[name] = timer.timings.get(name, 0.0) + time.perf_counter() - self.t0

        return _Phase()


# ----------------------------------------------------------------------------- read


def list_input_files(inputs: list[str]) -> list[str]:
    files: list[str] = []
    for spec in inputs:
        if os.path.isdir(spec):
            for root, _dirs, names in os.walk(spec):
                files.extend(os.path.join(root, n) for n in names if n.endswith(".parquet") and not n.startswith((".", "_")))
        elif os.path.isfile(spec):
            files.append(spec)
        else:
            matches = [m for m in glob.glob(spec, recursive=True) if os.path.isfile(m)]
            if not matches:
                raise InputError(f"--input {spec!r} matches no file")
            files.extend(matches)
    files = sorted(set(os.path.abspath(f) for f in files))
    if not files:
        raise InputError("no Parquet file found under --input")
    return files


@dataclass
class Clips:
    ids: pa.Array            # string or int64, one per accepted row, input order
    embeddings: np.ndarray   # float32 [n, d], unit rows
    rejected: list           # [(id or None, reason)]


def _embedding_values(col: pa.Array, dim: int | None) -> tuple[np.ndarray, np.ndarray, list, int | None]:
    """Dense rows for one batch's embedding column, plus the row mask of usable rows.

    Returns (float32 rows [m, d] for the rows in mask, mask [n] bool, reasons [(row, reason)], dim).
    """
    n = len(col)
    reasons: list = []
    t = col.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        raise InputError(f"embedding column must be a list of floats, got {t}")
    if not (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        raise InputError(f"embedding values must be floats, got {t.value_type}")
    valid = np.ones(n, dtype=bool)
    if col.null_count:
        nulls = col.is_null().to_numpy(zero_copy_only=False)
        for r in np.flatnonzero(nulls):
            reasons.append((int(r), "embedding is null"))
        valid &= ~nulls
    lengths = pc.list_value_length(col).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    if dim is None:
        candidates = np.flatnonzero(valid & (lengths > 0))
        if len(candidates):
            dim = int(lengths[candidates[0]])
    if dim is not None:
        wrong = valid & (lengths != dim)
        for r in np.flatnonzero(wrong):
            reasons.append((int(r), f"wrong dimension: {int(lengths[r])}, expected {dim}"))
        valid &= ~wrong
    else:  # every row null or empty: nothing fixes the dimension yet
        for r in np.flatnonzero(valid):
            reasons.append((int(r), "embedding is empty"))
        valid[:] = False
    if not dim or not valid.any():
        return np.empty((0, dim or 0)), valid & False, reasons, dim
    kept = col if valid.all() else col.filter(pa.array(valid))
    values = kept.flatten().to_numpy(zero_copy_only=False)  # nulls inside a list become NaN
    rows = np.asarray(values, dtype=np.float32).reshape(-1, dim)  # float64 input is read as float32
    return rows, valid, reasons, dim


def read_clips(files: list[str], id_field: str, embedding_field: str) -> Clips:
    dataset = ds.dataset(files, format="parquet")
    names = dataset.schema.names
    for f in (id_field, embedding_field):
        if f not in names:
            raise InputError(f"input has no column {f!r} (columns: {', '.join(names)})")
    id_type = dataset.schema.field(id_field).type
    if pa.types.is_integer(id_type):
        id_target = pa.int64()
    elif pa.types.is_string(id_type) or pa.types.is_large_string(id_type):
        id_target = pa.string()
    else:
        raise InputError(f"id column must be string or integer, got {id_type}")

    total = dataset.count_rows()
    embeddings: np.ndarray | None = None
    dim: int | None = None
    n_ok = 0
    id_chunks: list[pa.Array] = []
    rejected: list = []
    seen: set = set()
    # Little read-ahead: memory stays near the dense matrix plus a few batches.
    batches = dataset.to_batches(columns=[id_field, embedding_field], batch_size=READ_BATCH_ROWS,
                                 fragment_readahead=1, batch_readahead=2)
    for batch in batches:
        ids = batch.column(0).cast(id_target)
        rows, valid, reasons, dim = _embedding_values(batch.column(1), dim)
        id_list = ids.to_pylist()
        reason_of = {r: why for r, why in reasons}
        valid_rows = np.flatnonzero(valid)
        # Float64 sum of squares; a NaN/Inf anywhere makes it non-finite.
        sumsq = np.einsum("ij,ij->i", rows, rows, dtype=np.float64)
        id_bad = ids.is_null()
        if pa.types.is_string(id_target):
            id_bad = pc.or_(id_bad, pc.equal(pc.utf8_length(ids), 0))
        id_bad = id_bad.fill_null(True).to_numpy(zero_copy_only=False)[valid_rows]
        keep_local = ~id_bad & np.isfinite(sumsq) & (sumsq > 0)
        candidates = [id_list[r] for r in valid_rows[keep_local]]
        fresh = set(candidates)
        if len(fresh) == len(candidates) and seen.isdisjoint(fresh):
            seen |= fresh
        else:  # some id repeats: the first occurrence wins, row by row
            for j in np.flatnonzero(keep_local):
                ident = id_list[valid_rows[j]]
                if ident in seen:
                    keep_local[j] = False
                    reason_of[int(valid_rows[j])] = f"duplicate id {ident}"
                else:
                    seen.add(ident)
        for j in np.flatnonzero(~keep_local):
            r = int(valid_rows[j])
            if r in reason_of:
                continue
            if id_bad[j]:
                reason_of[r] = "id is null or empty"
            elif not np.isfinite(sumsq[j]):
                reason_of[r] = "embedding has NaN or Inf"
            else:
                reason_of[r] = "embedding is the zero vector"
        rejected.extend((id_list[r], reason_of[r]) for r in sorted(reason_of))
        if not keep_local.all():
            rows, sumsq = rows[keep_local], sumsq[keep_local]
        keep_rows = valid_rows[keep_local]
        if embeddings is None and dim:
            embeddings = np.empty((total, dim), dtype=np.float32)
        if len(rows):
            # x * (1/|x|) in float64, rounded once to float32 (numpy promotes, then casts into out).
            inv = 1.0 / np.sqrt(sumsq)
            np.multiply(rows, inv[:, None], out=embeddings[n_ok:n_ok + len(rows)], casting="unsafe")
            n_ok += len(rows)
            id_chunks.append(ids.take(pa.array(keep_rows)))
    if embeddings is None or n_ok == 0:
        raise InputError("no valid row in the input")
    if n_ok < total:
        embeddings = embeddings[:n_ok].copy()  # trim; rare, costs one copy
    ids_all = pa.concat_arrays(id_chunks) if id_chunks else pa.array([], type=id_target)
    return Clips(ids=ids_all, embeddings=embeddings, rejected=rejected)


# ----------------------------------------------------------------------------- k-means


def nearest_centroid(x: np.ndarray, centroids: np.ndarray, chunk: int = ASSIGN_CHUNK_ROWS):
    """Index of the nearest centroid per row (argmin |c|^2 - 2 x.c, float32) and that value."""
    cc = np.einsum("ij,ij->i", centroids, centroids).astype(np.float32)
    labels = np.empty(len(x), dtype=np.int64)
    partial = np.empty(len(x), dtype=np.float32)
    ct = np.ascontiguousarray(centroids.T)
    for s in range(0, len(x), chunk):
        g = x[s:s + chunk] @ ct
        g *= np.float32(-2)
        g += cc
        lab = np.argmin(g, axis=1)
        labels[s:s + chunk] = lab
        partial[s:s + chunk] = g[np.arange(len(g)), lab]
    return labels, partial


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    centroids = np.empty((k, x.shape[1]), dtype=np.float32)
    first = int(rng.integers(n))
    centroids[0] = x[first]
    xx = np.einsum("ij,ij->i", x, x).astype(np.float64)

    def sq_dist_to(c: np.ndarray) -> np.ndarray:
        d2 = xx + float(c.astype(np.float64) @ c.astype(np.float64)) - 2.0 * (x @ c).astype(np.float64)
        return np.maximum(d2, 0.0)

    closest = sq_dist_to(centroids[0])
    for i in range(1, k):
        cum = np.cumsum(closest)
        total = cum[-1]
        pick = int(rng.integers(n)) if total <= 0 else int(np.searchsorted(cum, rng.random() * total, side="right"))
        pick = min(pick, n - 1)
        centroids[i] = x[pick]
        np.minimum(closest, sq_dist_to(centroids[i]), out=closest)
    return centroids


def update_centroids(x: np.ndarray, labels: np.ndarray, old: np.ndarray) -> np.ndarray:
    k = len(old)
    sums = np.zeros(old.shape, dtype=np.float64)
    for s in range(0, len(x), ASSIGN_CHUNK_ROWS * 4):
        lab = labels[s:s + ASSIGN_CHUNK_ROWS * 4]
        onehot = np.zeros((k, len(lab)), dtype=np.float32)
        onehot[lab, np.arange(len(lab))] = 1.0
        sums += onehot @ x[s:s + ASSIGN_CHUNK_ROWS * 4]  # one sgemm instead of a scatter-add
    counts = np.bincount(labels, minlength=k)
    new = old.astype(np.float64).copy()
    nonempty = counts > 0
    new[nonempty] = sums[nonempty] / counts[nonempty, None]
    return new.astype(np.float32)


def fit_kmeans(x: np.ndarray, k: int, max_iter: int, tol: float, seed: int) -> tuple[np.ndarray, dict]:
    if len(x) < k:
        raise InputError(f"--n-clusters {k} is more than the {len(x)} valid rows")
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    centroids = kmeans_plus_plus(x, k, rng)
    init_s = time.perf_counter() - t0
    xx_sum = float(np.einsum("ij,ij->", x, x, dtype=np.float64))
    prior = None
    inertia = None
    iterations = 0
    for _ in range(max_iter):
        labels, partial = nearest_centroid(x, centroids)
        inertia = xx_sum + float(partial.astype(np.float64).sum())
        centroids = update_centroids(x, labels, centroids)
        iterations += 1
        if tol > 0 and prior is not None and prior - inertia <= tol * prior:
            break
        prior = inertia
    return centroids, {"init": "k-means++", "init_s": init_s, "iterations": iterations, "inertia": inertia}


def load_centroids(path: str, k: int, dim: int) -> np.ndarray:
    c = np.load(path)
    if c.ndim != 2 or c.shape[1] != dim:
        raise InputError(f"--centroids {path}: shape {c.shape}, expected [{k}, {dim}]")
    if c.shape[0] != k:
        raise InputError(f"--centroids {path} has {c.shape[0]} centroids but --n-clusters is {k}")
    if not np.isfinite(c).all():
        raise InputError(f"--centroids {path} holds NaN or Inf")
    return np.ascontiguousarray(c, dtype=np.float32)


def distances_to_centroids(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray):
    """(l2_dist_to_cent, cosine_dist_to_cent) per row, computed in float64, stored float32."""
    c64 = centroids.astype(np.float64)
    cnorm = np.sqrt(np.einsum("ij,ij->i", c64, c64))
    l2 = np.empty(len(x), dtype=np.float32)
    cos = np.empty(len(x), dtype=np.float32)
    step = 2048  # float64 temporaries stay small
    for s in range(0, len(x), step):
        xs = x[s:s + step].astype(np.float64)
        lab = labels[s:s + step]
        cs = c64[lab]
        diff = xs - cs
        l2[s:s + len(xs)] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        cos[s:s + len(xs)] = 1.0 - np.einsum("ij,ij->i", xs, cs) / cnorm[lab]
    return l2, cos


# ----------------------------------------------------------------------------- rank + pairwise


def rank_cluster(members: np.ndarray, dist: np.ndarray, id_rank: np.ndarray, which: str) -> np.ndarray:
    """Members of one cluster in rank order (first = kept over the rest)."""
    order = np.lexsort((id_rank[members], dist[members]))  # dist asc, id asc
    if which == "hard":
        order = order[::-1]  # dist desc, id desc (ids are unique, so a plain reversal is exact)
    elif which != "easy":
        raise InputError(f"--which-to-keep {which} is not supported here (hard|easy)")
    return members[order]


def pairwise_max_against_ranked(e: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row j of e (rank order): max over rows i < j of e_i.e_j, and the first argmax.

    NeMo's rule: no earlier row, or every earlier similarity negative, gives (0, j).
    Only the rows ranked before each block are multiplied: S = E[start:end] @ E[:end].T.
    """
    n = len(e)
    scores = np.zeros(n, dtype=np.float32)
    argmax = np.arange(n, dtype=np.int64)
    if n <= 1:
        return scores, argmax
    for start in range(0, n, batch):
        end = min(start + batch, n)
        # Row jj of s is clip start+jj against every clip 0..end-1 (contiguous reductions).
        s = e[start:end] @ e[:end].T
        m = end - start
        tri = np.arange(m)[None, :] >= np.arange(m)[:, None]  # candidate ranked at or after the clip
        sub = s[:, start:end]
        sub[tri] = -np.inf
        best = np.argmax(s, axis=1)  # first index among equal maxima
        val = s[np.arange(m), best]
        ok = val >= 0  # a max of exactly 0 from an earlier clip keeps that clip, as zero-masking does
        scores[start:end] = np.where(ok, val, np.float32(0))
        argmax[start:end] = np.where(ok, best, np.arange(start, end))
    return scores, argmax


# ----------------------------------------------------------------------------- write


def embedding_list_array(e: np.ndarray) -> pa.Array:
    n, d = e.shape
    if n * d >= 2**31:
        raise InputError("a cluster is too large for list<float32> offsets")
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(e).reshape(-1)))


def write_parquet(table: pa.Table, path: str, compression: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, path, compression=compression, row_group_size=WRITE_ROW_GROUP_ROWS)


# ----------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> dict:
    timer = PhaseTimer()
    t_start = time.perf_counter()
    out = os.path.abspath(args.output.rstrip("/"))
    tmp = f"{out}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        with timer.phase("read_normalize"):
            files = list_input_files(args.input)
            clips = read_clips(files, args.id_field, args.embedding_field)
            pa.default_memory_pool().release_unused()  # decoded batches are copied out; hand them back
        x = clips.embeddings
        n, dim = x.shape
        k = args.n_clusters

        kmeans_info: dict
        with timer.phase("kmeans"):
            if args.centroids:
                centroids = load_centroids(args.centroids, k, dim)
                kmeans_info = {"init": "given", "path": os.path.abspath(args.centroids)}
            else:
                centroids, kmeans_info = fit_kmeans(x, k, args.max_iter, args.tol, args.seed)

        with timer.phase("assign"):
            labels, _ = nearest_centroid(x, centroids)
            l2, cos = distances_to_centroids(x, centroids, labels)

        with timer.phase("write_kmeans"):
            np.save(os.path.join(tmp, "kmeans_centroids.npy"), centroids)
            by_cluster = np.argsort(labels, kind="stable")
            bounds = np.searchsorted(labels[by_cluster], np.arange(k + 1))
            for c in range(k):
                rows = by_cluster[bounds[c]:bounds[c + 1]]
                if len(rows) == 0:
                    continue
                table = pa.table({
                    "id": clips.ids.take(pa.array(rows)),
                    "embedding": embedding_list_array(x[rows]),
                    "centroid": pa.array(np.full(len(rows), c, dtype=np.int32)),
                    "l2_dist_to_cent": pa.array(l2[rows]),
                    "cosine_dist_to_cent": pa.array(cos[rows]),
                })
                write_parquet(table, os.path.join(tmp, "kmeans_results", f"centroid={c}", "part-0.parquet"), args.compression)

        with timer.phase("rank"):
            id_rank = np.empty(n, dtype=np.int64)
            id_rank[pc.sort_indices(clips.ids).to_numpy()] = np.arange(n)  # byte order for strings
            dist = l2 if args.distance_metric == "l2" else cos
            ranked = [rank_cluster(by_cluster[bounds[c]:bounds[c + 1]], dist, id_rank, args.which_to_keep) for c in range(k)]

        all_scores = np.zeros(n, dtype=np.float32)
        pair_tables = []
        with timer.phase("pairwise"):
            for c in range(k):
                members = ranked[c]
                if len(members) == 0:
                    pair_tables.append(None)
                    continue
                e = x[members]
                scores, best = pairwise_max_against_ranked(e, args.pairwise_batch_size)
                all_scores[members] = scores
                pair_tables.append((members, members[best], scores))

        with timer.phase("write_pairwise"):
            for c, item in enumerate(pair_tables):
                if item is None:
                    continue
                members, max_rows, scores = item
                table = pa.table({
                    "id": clips.ids.take(pa.array(members)),
                    "max_id": clips.ids.take(pa.array(max_rows)),
                    "cosine_sim_score": pa.array(scores),
                })
                write_parquet(table, os.path.join(tmp, "pairwise_results", f"cluster_{c}.parquet"), args.compression)

        duplicates = None
        if args.eps is not None:
            with timer.phase("duplicates"):
                dup_rows = np.flatnonzero(all_scores.astype(np.float64) >= 1.0 - args.eps)
                dup_ids = clips.ids.take(pa.array(dup_rows))
                dup_ids = dup_ids.take(pc.sort_indices(dup_ids))
                write_parquet(pa.table({"id": dup_ids}), os.path.join(tmp, "duplicates", "part-0.parquet"), args.compression)
                duplicates = len(dup_ids)

        if clips.rejected:
            ids_rej = [r[0] for r in clips.rejected]
            table = pa.table({"id": pa.array([None if i is None else str(i) for i in ids_rej], type=pa.string()),
                              "reason": pa.array([r[1] for r in clips.rejected], type=pa.string())})
            write_parquet(table, os.path.join(tmp, "rejected", "part-0.parquet"), args.compression)

        sizes = np.diff(bounds)
        timer.timings["total"] = time.perf_counter() - t_start
        summary = {
            "tool": "numpy_semdedup",
            "rows": int(n),
            "clusters": int(k),
            "nonempty_clusters": int((sizes > 0).sum()),
            "largest_cluster": int(sizes.max()),
            "duplicates": duplicates,
            "rejected_rows": len(clips.rejected),
            "dim": int(dim),
            "files": len(files),
            "kmeans": kmeans_info,
            "timings_s": {key: round(v, 4) for key, v in timer.timings.items()},
            "config": {
                "input": args.input, "n_clusters": k, "centroids": args.centroids, "max_iter": args.max_iter,
                "tol": args.tol, "seed": args.seed, "eps": args.eps, "which_to_keep": args.which_to_keep,
                "distance_metric": args.distance_metric, "pairwise_batch_size": args.pairwise_batch_size,
                "id_field": args.id_field, "embedding_field": args.embedding_field, "compression": args.compression,
            },
            "versions": {"numpy": np.__version__, "pyarrow": pa.__version__, "python": sys.version.split()[0]},
            "threads": {v: os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS") if v in os.environ},
        }
        with open(os.path.join(tmp, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        shutil.rmtree(out, ignore_errors=True)
        os.rename(tmp, out)
        return summary
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------- self-test


def self_test() -> None:
    """NeMo's own pairwise reference case, block-size invariance, and a brute-force check."""
    rows = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12], [1, 2, 3], [1, 2, 3]], dtype=np.float64)
    e = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    want_scores = np.array([0, 0.974631, 0.998190, 0.999618, 1, 1])
    want_idx = np.array([0, 0, 1, 2, 0, 0])
    for batch in (1, 2, 3, 4, 1024):
        scores, idx = pairwise_max_against_ranked(e, batch)
        assert np.allclose(scores, want_scores, atol=1e-5), (batch, scores)
        assert (idx == want_idx).all(), (batch, idx)

    # Negative similarities: every earlier clip points away -> score 0, max_id = itself.
    neg = np.array([[1, 0], [-1, 0], [0, 1]], dtype=np.float32)
    scores, idx = pairwise_max_against_ranked(neg, 2)
    assert scores.tolist() == [0, 0, 0] and idx.tolist() == [0, 1, 0], (scores, idx)

    # Brute force on random data with ties, several block sizes.
    rng = np.random.default_rng(0)
    base = rng.standard_normal((40, 8)).astype(np.float32)
    base[25] = base[3]
    base[31] = base[3]
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    sims = base @ base.T
    want_s = np.zeros(40, dtype=np.float32)
    want_i = np.arange(40)
    for j in range(1, 40):
        i = int(np.argmax(sims[:j, j]))
        if sims[i, j] >= 0:
            want_s[j], want_i[j] = sims[i, j], i
    for batch in (1, 7, 16, 40, 1024):
        scores, idx = pairwise_max_against_ranked(base, batch)
        assert np.allclose(scores, want_s, atol=1e-6) and (idx == want_i).all(), batch

    # Ranking: hard = dist desc then id desc; easy = asc, asc.
    dist = np.array([0.5, 0.2, 0.5, 0.9], dtype=np.float32)
    id_rank = np.array([0, 1, 2, 3])
    members = np.arange(4)
    assert rank_cluster(members, dist, id_rank, "hard").tolist() == [3, 2, 0, 1]
    assert rank_cluster(members, dist, id_rank, "easy").tolist() == [1, 0, 2, 3]

    # k-means recovers well-separated blobs.
    centers = np.eye(4, 16, dtype=np.float32)
    pts = np.repeat(centers, 50, axis=0) + 0.01 * rng.standard_normal((200, 16)).astype(np.float32)
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    c, info = fit_kmeans(pts, 4, 10, 0.0, 42)
    labels, _ = nearest_centroid(pts, c)
    assert len(set(labels.reshape(4, 50)[:, 0])) == 4 and (labels.reshape(4, 50) == labels.reshape(4, 50)[:, :1]).all()
    assert info["iterations"] == 10
    print("self-test passed")


# ----------------------------------------------------------------------------- cli


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="NumPy port of semdedup run (NeMo semantic-dedup semantics)")
    p.add_argument("--input", nargs="+", help="Parquet file(s), folder(s) or glob(s)")
    p.add_argument("--output", help="output folder (NeMo layout); replaced when complete")
    p.add_argument("--n-clusters", type=int)
    p.add_argument("--centroids", help="float32 [k, d] .npy; skips k-means")
    p.add_argument("--max-iter", type=int, default=30)
    p.add_argument("--tol", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--eps", type=float)
    p.add_argument("--which-to-keep", choices=["hard", "easy"], default="hard")
    p.add_argument("--distance-metric", choices=["cosine", "l2"], default="cosine")
    p.add_argument("--pairwise-batch-size", type=int, default=1024)
    p.add_argument("--id-field", default="id")
    p.add_argument("--embedding-field", default="embedding")
    p.add_argument("--compression", default="snappy", help="Parquet codec of the outputs")
    p.add_argument("--json", action="store_true", help="print the whole summary as JSON")
    p.add_argument("--self-test", action="store_true", help="run the built-in checks and exit")
    args = p.parse_args(argv)
    if not args.self_test:
        missing = [f for f in ("input", "output", "n_clusters") if getattr(args, f) is None]
        if missing:
            p.error("missing " + ", ".join("--" + m.replace("_", "-") for m in missing))
        if args.n_clusters < 1 or args.pairwise_batch_size < 1 or args.max_iter < 0:
            p.error("--n-clusters, --pairwise-batch-size must be >= 1 and --max-iter >= 0")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.self_test:
        self_test()
        return 0
    try:
        summary = run(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        t = summary["timings_s"]
        print(f"rows={summary['rows']} clusters={summary['clusters']} duplicates={summary['duplicates']} "
              f"rejected={summary['rejected_rows']} total={t['total']:.2f}s "
              + " ".join(f"{k}={v:.2f}s" for k, v in t.items() if k != "total"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
