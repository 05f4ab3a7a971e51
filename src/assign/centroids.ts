import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../shared/errors.js';
import { readNpy } from './npy.js';

/** Centroids from NeMo's kmeans_centroids.npy, or from a previous run's output folder holding one. */
export function loadCentroids(pathOrDir: string, expectedDim?: number): { centroids: Float32Array; k: number; dim: number; path: string } {
  let path = pathOrDir;
  if (existsSync(path) && statSync(path).isDirectory()) {
    path = join(pathOrDir, 'kmeans_centroids.npy');
    if (!existsSync(path)) throw new InputError('folder has no kmeans_centroids.npy (give the .npy file or a run output folder)', { context: { file: pathOrDir } });
  }
  const { data, shape } = readNpy(path);
  if (shape.length !== 2) throw new InputError(`centroids must be a 2-d array [k, dim], got shape [${shape.join(', ')}]`, { context: { file: path } });
  const [k, dim] = shape as [number, number];
  if (expectedDim !== undefined && dim !== expectedDim) {
    throw new InputError(`centroids have dimension ${dim} but the embeddings have ${expectedDim}`, { context: { file: path } });
  }
  return { centroids: data, k, dim, path };
}

/** A short checksum of the centroids, so a state folder can refuse other centroids. */
export function centroidsChecksum(centroids: Float32Array): string {
  const bytes = new Uint8Array(centroids.buffer, centroids.byteOffset, centroids.byteLength);
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193;
  for (let i = 0; i < bytes.length; i++) {
    h1 = Math.imul(h1 ^ bytes[i]!, 16777619);
    h2 = Math.imul(h2 ^ bytes[i]!, 2246822519);
  }
  return `${(h1 >>> 0).toString(16)}${(h2 >>> 0).toString(16)}:${centroids.length}`;
}
