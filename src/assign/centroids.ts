import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../shared/errors.js';
import { readNpy } from './npy.js';

/** `--centroids`: a .npy file, or a `semdedup run` output folder holding kmeans_centroids.npy. */
export function resolveCentroidsPath(path: string): string {
  if (existsSync(path) && statSync(path).isDirectory()) {
    const file = join(path, 'kmeans_centroids.npy');
    if (!existsSync(file)) throw new InputError(`folder ${path} holds no kmeans_centroids.npy (expected a semdedup run output or a .npy file)`, { context: { file: path, field: 'centroids' } });
    return file;
  }
  return path;
}

/** Centroids from NeMo's kmeans_centroids.npy, or from a previous run's output folder holding one. */
export function loadCentroids(pathOrDir: string, expectedDim?: number): { centroids: Float32Array; k: number; dim: number; path: string } {
  const path = resolveCentroidsPath(pathOrDir);
  const { data, shape } = readNpy(path);
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
