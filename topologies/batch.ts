/**
 * The batch workflow (`semdedup run`): NeMo Curator's semantic dedup, step by step.
 * Each step is a stage from src/; the step id names it in logs and summary timings.
 */
import { assignClips, fitOrLoadCentroids } from '../src/batch/cluster.js';
import type { BatchContext } from '../src/batch/context.js';
import { identifyDuplicates, materializePairwise } from '../src/batch/identify.js';
import { ingestInputs } from '../src/batch/ingest.js';
import { pairwiseAllClusters } from '../src/batch/pairwise.js';
import { defineTopology, step } from '../src/runtime/runner.js';

export const batchTopology = defineTopology<BatchContext>('batch', [
  step('ingest', ingestInputs), // inputs → validate → normalize → spill; bad rows → rejected/
  step('kmeans', fitOrLoadCentroids), // --centroids or k-means fit → kmeans_centroids.npy
  step('assign', assignClips), // nearest centroid + distances → DuckDB clips (ranked)
  step('pairwise', pairwiseAllClusters), // kmeans_results/ + pairwise_results/ per cluster
  step('materialize-pairwise', materializePairwise), // DuckDB pairwise table; stop here without eps
  step('identify', identifyDuplicates), // duplicates/ = score >= 1 - eps
]);
