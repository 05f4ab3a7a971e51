#!/usr/bin/env python3
"""Compare two semdedup output folders (NeMo layout) and print the agreement as JSON.

    python3 bench/compare_outputs.py DIR_A DIR_B [--tol 1e-5]

Prints {ids, matching, fraction, dup_a, dup_b, dup_equal, ...}:
  ids        ids in the union of both pairwise_results tables
  matching   ids present in both with the same max_id and |score_a - score_b| <= tol
  fraction   matching / ids
  dup_a/b    number of ids in duplicates/ (null when a folder has none)
  dup_equal  whether the two duplicate sets are equal
and, for diagnosis: only_a, only_b, max_id_differ, score_differ, max_abs_score_diff,
dup_only_a, dup_only_b, centroid_ids, centroid_matching (same centroid per id in
kmeans_results, null when a folder has none), cluster_agreement (the same, up to a
relabelling of the clusters: for each cluster of A, its largest overlap with one of B).
Exit status 0 whatever the agreement; 2 when a folder has no pairwise_results.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def _read_files(paths: list[str], columns: list[str]) -> pa.Table:
    # ParquetFile, not read_table: no hive-partition discovery that would clash with `centroid`.
    tables = [pq.ParquetFile(p).read(columns=columns) for p in sorted(paths)]
    return pa.concat_tables(tables, promote_options="permissive")


def _as_str(arr) -> np.ndarray:
    # Ids may be strings or integers; compare their text so both typings line up.
    return np.array([None if v is None else str(v) for v in arr.to_pylist()], dtype=object)


def read_pairwise(folder: str) -> dict | None:
    paths = glob.glob(os.path.join(folder, "pairwise_results", "**", "*.parquet"), recursive=True)
    if not paths:
        return None
    t = _read_files(paths, ["id", "max_id", "cosine_sim_score"])
    ids = _as_str(t.column("id"))
    max_ids = _as_str(t.column("max_id"))
    scores = t.column("cosine_sim_score").to_numpy().astype(np.float64)
    return {i: (m, s) for i, m, s in zip(ids, max_ids, scores)}


def read_duplicates(folder: str) -> set | None:
    paths = glob.glob(os.path.join(folder, "duplicates", "**", "*.parquet"), recursive=True)
    if not paths:
        return None
    t = _read_files(paths, ["id"])
    return set(_as_str(t.column("id")))


def read_centroids(folder: str) -> dict | None:
    paths = glob.glob(os.path.join(folder, "kmeans_results", "**", "*.parquet"), recursive=True)
    if not paths:
        return None
    out = {}
    for p in paths:
        f = pq.ParquetFile(p)
        if "centroid" in f.schema_arrow.names:
            t = f.read(columns=["id", "centroid"])
            out.update(zip(_as_str(t.column("id")), t.column("centroid").to_pylist()))
        else:  # centroid only in the hive directory name
            part = [s for s in p.split(os.sep) if s.startswith("centroid=")]
            c = int(part[-1].split("=", 1)[1]) if part else None
            out.update((i, c) for i in _as_str(f.read(columns=["id"]).column("id")))
    return out


def _cluster_agreement(ca: dict, cb: dict, ids: set) -> float:
    """Share of ids in the B cluster that overlaps most with their A cluster (label-permutation free)."""
    if not ids:
        return 1.0
    pairs: dict = {}
    for i in ids:
        key = (ca[i], cb[i])
        pairs[key] = pairs.get(key, 0) + 1
    best: dict = {}
    for (a, _b), count in pairs.items():
        best[a] = max(best.get(a, 0), count)
    return sum(best.values()) / len(ids)


def compare(dir_a: str, dir_b: str, tol: float = 1e-5) -> dict:
    pa_, pb = read_pairwise(dir_a), read_pairwise(dir_b)
    if pa_ is None or pb is None:
        missing = [d for d, p in ((dir_a, pa_), (dir_b, pb)) if p is None]
        raise FileNotFoundError(f"no pairwise_results/*.parquet in {', '.join(missing)}")
    union = pa_.keys() | pb.keys()
    both = pa_.keys() & pb.keys()
    matching = max_id_differ = score_differ = 0
    max_diff = 0.0
    for i in both:
        ma, sa = pa_[i]
        mb, sb = pb[i]
        diff = abs(sa - sb)
        max_diff = max(max_diff, float(diff))
        same_id = ma == mb
        close = bool(diff <= tol)
        matching += same_id and close
        max_id_differ += not same_id
        score_differ += not close
    da, db = read_duplicates(dir_a), read_duplicates(dir_b)
    ca, cb = read_centroids(dir_a), read_centroids(dir_b)
    cent_both = (ca.keys() & cb.keys()) if ca is not None and cb is not None else None
    return {
        "ids": len(union),
        "matching": matching,
        "fraction": matching / len(union) if union else 1.0,
        "dup_a": None if da is None else len(da),
        "dup_b": None if db is None else len(db),
        "dup_equal": da == db,
        "only_a": len(pa_.keys() - pb.keys()),
        "only_b": len(pb.keys() - pa_.keys()),
        "max_id_differ": max_id_differ,
        "score_differ": score_differ,
        "max_abs_score_diff": max_diff,
        "dup_only_a": None if da is None or db is None else len(da - db),
        "dup_only_b": None if da is None or db is None else len(db - da),
        "centroid_ids": None if cent_both is None else len(cent_both),
        "centroid_matching": None if cent_both is None else sum(ca[i] == cb[i] for i in cent_both),
        "cluster_agreement": None if cent_both is None else _cluster_agreement(ca, cb, cent_both),
        "tol": tol,
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description="Compare two semdedup/NeMo output folders")
    p.add_argument("dir_a")
    p.add_argument("dir_b")
    p.add_argument("--tol", type=float, default=1e-5, help="largest |score difference| that still matches")
    args = p.parse_args(argv)
    try:
        result = compare(args.dir_a, args.dir_b, args.tol)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
