/** Assignment stage: k-means fit over a RowSource and exact assignment of clips to centroids. */
export { assignToCentroids, centroidNorms, createRng, fitKMeans, meanFeatureVariance, probedCentroid, sampleSortedIndices, secondNearestCentroids } from './kmeans.js';
export type { CentroidAssignment, KMeansInit, KMeansOptions, KMeansResult, Rng, SecondNearestCentroids } from './kmeans.js';
export { DEFAULT_CHUNK_ROWS, createFileRowSource, rowSourceFromArray } from './row-source.js';
export type { RowSource } from './row-source.js';
export { readNpy, writeNpy } from './npy.js';
export type { NpyArray } from './npy.js';
