import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../shared/errors.js';
import { isRemotePath, joinPath, storageFor, type StorageOptions } from '../storage/index.js';
import { parseNpy, readNpy, type NpyArray } from './npy.js';

/** `--centroids`: a .npy file, or a `semdedup run` output folder holding kmeans_centroids.npy. */
export function resolveCentroidsPath(path: string): string {
  if (existsSync(path) && statSync(path).isDirectory()) {
    const file = join(path, 'kmeans_centroids.npy');
    if (!existsSync(file)) throw new InputError(`folder ${path} holds no kmeans_centroids.npy (expected a semdedup run output or a .npy file)`, { context: { file: path, field: 'centroids' } });
    return file;
  }
  return path;
}

export interface LoadedCentroids {
  centroids: Float32Array;
  k: number;
  dim: number;
  path: string;
}

/** Centroids from NeMo's kmeans_centroids.npy, or from a previous run's output folder holding one. */
export function loadCentroids(pathOrDir: string, expectedDim?: number): LoadedCentroids {
  const path = resolveCentroidsPath(pathOrDir);
  return checkedCentroids(readNpy(path), path, expectedDim);
}

/**
 * `loadCentroids` for local or `s3://` paths: a `.npy` object, or a prefix holding a run's
 * kmeans_centroids.npy.
 */
export async function readCentroids(pathOrDir: string, expectedDim?: number, storage?: StorageOptions): Promise<LoadedCentroids> {
  if (!isRemotePath(pathOrDir)) return loadCentroids(pathOrDir, expectedDim);
  const store = storageFor(pathOrDir, storage);
  const entry = await store.stat(pathOrDir);
  if (!entry) throw new InputError(`centroids ${pathOrDir} do not exist`, { context: { file: pathOrDir, field: 'centroids' } });
  const path = entry.kind === 'folder' ? joinPath(pathOrDir, 'kmeans_centroids.npy') : pathOrDir;
  if (entry.kind === 'folder' && (await store.stat(path))?.kind !== 'file') {
    throw new InputError(`folder ${pathOrDir} holds no kmeans_centroids.npy (expected a semdedup run output or a .npy file)`, { context: { file: pathOrDir, field: 'centroids' } });
  }
  const bytes = await store.readFile(path);
  return checkedCentroids(parseNpy(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), path), path, expectedDim);
}

function checkedCentroids({ data, shape }: NpyArray, path: string, expectedDim: number | undefined): LoadedCentroids {
  if (shape.length !== 2) throw new InputError(`centroids must be a 2-d array [k, dim], got shape [${shape.join(', ')}]`, { context: { file: path } });
  const [k, dim] = shape as [number, number];
  if (expectedDim !== undefined && dim !== expectedDim) {
    throw new InputError(`centroids have dimension ${dim} but the embeddings have ${expectedDim}`, { context: { file: path } });
  }
  return { centroids: data, k, dim, path };
}

/** Checksum of the centroids, so a state folder can refuse other centroids. */
export function centroidsChecksum(centroids: Float32Array): string {
  return createHash('sha256').update(new Uint8Array(centroids.buffer, centroids.byteOffset, centroids.byteLength)).digest('hex');
}
