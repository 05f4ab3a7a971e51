/** Assignment stage: k-means fit over a RowSource and exact assignment of clips to centroids. */
export { assignToCentroids, centroidNorms, createRng, fitKMeans, meanFeatureVariance, sampleSortedIndices } from './kmeans.js';
export type { CentroidAssignment, KMeansInit, KMeansOptions, KMeansResult, Rng } from './kmeans.js';
export { DEFAULT_CHUNK_ROWS, createFileRowSource, rowSourceFromArray } from './row-source.js';
export type { RowSource } from './row-source.js';
export { readNpy, writeNpy } from './npy.js';
export type { NpyArray } from './npy.js';
