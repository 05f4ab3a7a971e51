#!/usr/bin/env python3
"""Synthetic clip embeddings for the benchmarks: clustered rows plus near-copies.

    python3 bench/gen_data.py --rows 50000 --dim 768 --clusters 50 --dup-fraction 0.05 \
        --files 4 --seed 1 --out DIR [--write-centroids C.npy]

Each of the `clusters` generating directions is a random unit vector. A base row is its
cluster's direction plus Gaussian noise of norm ~1 (cosine ~0.7 to the direction, ~0.5 between
rows of a cluster, so almost no accidental duplicates). A `dup-fraction` of the rows are
near-copies of a base row of the same file: the base plus noise of relative norm t ~ U(0, 0.2),
so their cosine similarity spans ~0.98..1 (about 70% of them fall within eps = 0.01). Every row
is then scaled by U(0.5, 2) (the tools must normalize) and the rows of a file are shuffled.

Output: DIR/part-00000.parquet ... with columns `id` (string `clip-0000001`, global order) and
`embedding` (fixed_size_list<float32, dim>), row groups of 16384 rows. Files are generated one
at a time, so memory stays at one file's worth of rows.

--write-centroids writes k-means-like centroids, float32 [clusters, dim]: each direction scaled
to the mean length of its normalized rows (~0.7) and perturbed slightly, so both tools can run
with given centroids. It may be used without --out.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_ROWS = 16384
BASE_NOISE = 1.0         # norm of the noise added to a direction for a base row
MAX_DUP_NOISE = 0.2      # near-copies: relative noise norm t ~ U(0, MAX_DUP_NOISE)


def directions(rng: np.random.Generator, clusters: int, dim: int) -> np.ndarray:
    d = rng.standard_normal((clusters, dim))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def centroids_for(dirs: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 7])
    clusters, dim = dirs.shape
    # E[x] for x = normalize(dir + noise of norm 1) is ~ dir / sqrt(2).
    c = dirs / np.sqrt(1.0 + BASE_NOISE**2)
    c += 0.02 * rng.standard_normal((clusters, dim)) / np.sqrt(dim)
    return c.astype(np.float32)


def gen_file(rng: np.random.Generator, dirs: np.ndarray, weights: np.ndarray, rows: int, dup_fraction: float) -> np.ndarray:
    clusters, dim = dirs.shape
    n_dup = int(round(rows * dup_fraction))
    n_base = rows - n_dup
    labels = rng.choice(clusters, size=n_base, p=weights)
    base = dirs[labels] + BASE_NOISE * rng.standard_normal((n_base, dim)) / np.sqrt(dim)
    base = base.astype(np.float32)
    if n_dup:
        src = rng.integers(0, n_base, size=n_dup)
        t = rng.uniform(0.0, MAX_DUP_NOISE, size=n_dup)
        noise = rng.standard_normal((n_dup, dim))
        noise *= (t * np.linalg.norm(base[src], axis=1) / np.linalg.norm(noise, axis=1))[:, None]
        dups = (base[src] + noise).astype(np.float32)
        x = np.concatenate([base, dups])
    else:
        x = base
    x *= rng.uniform(0.5, 2.0, size=(rows, 1)).astype(np.float32)
    return x[rng.permutation(rows)]


def write_file(path: str, first_id: int, x: np.ndarray) -> None:
    n, dim = x.shape
    ids = pa.array([f"clip-{i:07d}" for i in range(first_id, first_id + n)], type=pa.string())
    emb = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(x).reshape(-1)), dim)
    table = pa.table({"id": ids, "embedding": emb})
    tmp = path + ".tmp"
    pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=50000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--clusters", type=int, default=50)
    p.add_argument("--dup-fraction", type=float, default=0.05)
    p.add_argument("--files", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", help="folder for the Parquet files")
    p.add_argument("--write-centroids", metavar="F.npy", help="also write float32 [clusters, dim] centroids")
    args = p.parse_args(argv)
    if not args.out and not args.write_centroids:
        p.error("give --out and/or --write-centroids")
    if not 0 <= args.dup_fraction < 1 or args.rows < 1 or args.files < 1 or args.clusters < 1:
        p.error("need rows, files, clusters >= 1 and 0 <= dup-fraction < 1")

    rng = np.random.default_rng(args.seed)
    dirs = directions(rng, args.clusters, args.dim)
    # Uneven cluster sizes, as real data has (largest ~2-3x the mean).
    weights = rng.dirichlet(np.full(args.clusters, 5.0))

    if args.write_centroids:
        os.makedirs(os.path.dirname(os.path.abspath(args.write_centroids)), exist_ok=True)
        np.save(args.write_centroids, centroids_for(dirs, args.seed))

    if args.out:
        os.makedirs(args.out, exist_ok=True)
        per_file = [args.rows // args.files + (1 if i < args.rows % args.files else 0) for i in range(args.files)]
        next_id = 1
        for i, rows in enumerate(per_file):
            file_rng = np.random.default_rng([args.seed, 1000 + i])
            x = gen_file(file_rng, dirs, weights, rows, args.dup_fraction)
            write_file(os.path.join(args.out, f"part-{i:05d}.parquet"), next_id, x)
            next_id += rows
        print(json.dumps({"out": args.out, "rows": args.rows, "dim": args.dim, "clusters": args.clusters,
                          "files": args.files, "dup_fraction": args.dup_fraction, "seed": args.seed,
                          "centroids": args.write_centroids}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
