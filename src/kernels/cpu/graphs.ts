/**
 * The fused ONNX graphs behind the cpu kernel, built in code (see onnx-model.ts). Shapes are
 * dynamic (`m`, `n`, `d`, `k`) so one session per graph serves every block size.
 */
import { OnnxType, attr, encodeModel } from './onnx-model.js';
import type { OnnxGraph, OnnxNode } from './onnx-model.js';

const F = OnnxType.FLOAT;

/** Max + first argmax along the candidate axis, index cast to int32 for a cheap JS view. */
function maxAndArgmax(from: string, score: string, index: string): OnnxNode[] {
  return [
    { op: 'ReduceMax', inputs: [from], outputs: [score], attributes: { axes: attr.ints([1]), keepdims: attr.int(0) } },
    // select_last_index=0: among equal maxima the lowest candidate index, i.e. the first-ranked.
    {
      op: 'ArgMax',
      inputs: [from],
      outputs: [`${index}_i64`],
      attributes: { axis: attr.int(1), keepdims: attr.int(0), select_last_index: attr.int(0) },
    },
    { op: 'Cast', inputs: [`${index}_i64`], outputs: [index], attributes: { to: attr.int(OnnxType.INT32) } },
  ];
}

/**
 * rankedMax with the rank mask: sim = Q·Cᵀ; sim[i][j] = -inf unless candidatePos[j] < queryPos[i];
 * then max and first argmax per query. A query with no candidate before it gets -inf; ArgMax then
 * answers 0, which the caller ignores (it only takes a block's answer on a larger score).
 */
export function rankedMaxMaskedModel(): Uint8Array {
  const graph: OnnxGraph = {
    name: 'ranked_max_masked',
    initializers: [
      { name: 'axis0', elemType: OnnxType.INT64, dims: [1], values: [0] },
      { name: 'axis1', elemType: OnnxType.INT64, dims: [1], values: [1] },
      { name: 'neg_inf', elemType: F, dims: [], values: [-Infinity] },
    ],
    inputs: [
      { name: 'queries', elemType: F, dims: ['m', 'd'] },
      { name: 'candidates', elemType: F, dims: ['n', 'd'] },
      { name: 'query_pos', elemType: OnnxType.INT32, dims: ['m'] },
      { name: 'candidate_pos', elemType: OnnxType.INT32, dims: ['n'] },
    ],
    outputs: [
      { name: 'score', elemType: F, dims: ['m'] },
      { name: 'index', elemType: OnnxType.INT32, dims: ['m'] },
    ],
    nodes: [
      { op: 'Gemm', inputs: ['queries', 'candidates'], outputs: ['sim'], attributes: { transB: attr.int(1) } },
      { op: 'Unsqueeze', inputs: ['query_pos', 'axis1'], outputs: ['qpos_col'] },
      { op: 'Unsqueeze', inputs: ['candidate_pos', 'axis0'], outputs: ['cpos_row'] },
      { op: 'Less', inputs: ['cpos_row', 'qpos_col'], outputs: ['before'] },
      { op: 'Where', inputs: ['before', 'sim', 'neg_inf'], outputs: ['masked'] },
      ...maxAndArgmax('masked', 'score', 'index'),
    ],
  };
  return encodeModel(graph);
}

/**
 * Column width of the blocks in `rankedMaxOpenModel`. ORT's ArgMax is a scalar loop (about 5×
 * the cost of ReduceMax per element), so the open graph takes the max of each block of this many
 * columns with the fast ReduceMax, runs ArgMax over the block maxima, and runs ArgMax again only
 * inside the one winning block per query.
 */
export const OPEN_BLOCK = 128;

/**
 * rankedMax without a mask, for candidate columns ranked before every query of the call; the
 * candidate count must be a multiple of OPEN_BLOCK. The first block holding the max, then the
 * first column in it holding the max, is the first column overall: first-index ties survive.
 */
export function rankedMaxOpenModel(): Uint8Array {
  const I64 = OnnxType.INT64;
  const graph: OnnxGraph = {
    name: 'ranked_max_open',
    initializers: [
      { name: 'blocked_shape', elemType: I64, dims: [3], values: [0, -1, OPEN_BLOCK] },
      { name: 'block_width', elemType: I64, dims: [], values: [OPEN_BLOCK] },
      { name: 'axis1', elemType: I64, dims: [1], values: [1] },
    ],
    inputs: [
      { name: 'queries', elemType: F, dims: ['m', 'd'] },
      { name: 'candidates', elemType: F, dims: ['n', 'd'] },
    ],
    outputs: [
      { name: 'score', elemType: F, dims: ['m'] },
      { name: 'index', elemType: OnnxType.INT32, dims: ['m'] },
    ],
    nodes: [
      { op: 'Gemm', inputs: ['queries', 'candidates'], outputs: ['sim'], attributes: { transB: attr.int(1) } },
      { op: 'Reshape', inputs: ['sim', 'blocked_shape'], outputs: ['blocked'] }, // [m, n/B, B], no copy
      { op: 'ReduceMax', inputs: ['blocked'], outputs: ['block_max'], attributes: { axes: attr.ints([2]), keepdims: attr.int(0) } },
      { op: 'ReduceMax', inputs: ['block_max'], outputs: ['score'], attributes: { axes: attr.ints([1]), keepdims: attr.int(0) } },
      {
        op: 'ArgMax',
        inputs: ['block_max'],
        outputs: ['block'],
        attributes: { axis: attr.int(1), keepdims: attr.int(1), select_last_index: attr.int(0) },
      },
      { op: 'GatherND', inputs: ['blocked', 'block'], outputs: ['winning_block'], attributes: { batch_dims: attr.int(1) } }, // [m, B]
      {
        op: 'ArgMax',
        inputs: ['winning_block'],
        outputs: ['within'],
        attributes: { axis: attr.int(1), keepdims: attr.int(1), select_last_index: attr.int(0) },
      },
      { op: 'Mul', inputs: ['block', 'block_width'], outputs: ['block_start'] },
      { op: 'Add', inputs: ['block_start', 'within'], outputs: ['index_col'] },
      { op: 'Squeeze', inputs: ['index_col', 'axis1'], outputs: ['index_i64'] },
      { op: 'Cast', inputs: ['index_i64'], outputs: ['index'], attributes: { to: attr.int(OnnxType.INT32) } },
    ],
  };
  return encodeModel(graph);
}

/**
 * nearestCentroid: g = ‖c‖² − 2·x·c (one Gemm with the norms as bias), argmin/min over centroids,
 * then dist2 = max(min + ‖x‖², 0). ‖x‖² is constant per row so it is added after the min, saving a
 * pass over the [n, k] matrix; the clamp removes tiny negatives from cancellation.
 */
export function nearestCentroidModel(): Uint8Array {
  return nearestCentroidGraph('nearest_centroid', false);
}

/**
 * nearestCentroidSums, first half: nearestCentroid without the per-call pass for ‖x‖² (given as
 * `x_norm2`, computed once per k-means fit). The k × d sums of the rows assigned to each centroid
 * are the second half, `scatterAddRowsModel`, run in a single-threaded session (see there).
 */
export function nearestCentroidSumsModel(): Uint8Array {
  return nearestCentroidGraph('nearest_centroid_sums', true);
}

/** The assignment graph; `givenNorms`: ‖x‖² comes in as the input `x_norm2` instead of being computed. */
function nearestCentroidGraph(name: string, givenNorms: boolean): Uint8Array {
  const graph: OnnxGraph = {
    name,
    initializers: [{ name: 'zero', elemType: F, dims: [], values: [0] }],
    inputs: [
      { name: 'x', elemType: F, dims: ['n', 'd'] },
      { name: 'centroids', elemType: F, dims: ['k', 'd'] },
      ...(givenNorms ? [{ name: 'x_norm2', elemType: F, dims: ['n'] }] : []),
    ],
    outputs: [
      { name: 'index', elemType: OnnxType.INT32, dims: ['n'] },
      { name: 'dist2', elemType: F, dims: ['n'] },
    ],
    nodes: [
      { op: 'ReduceSumSquare', inputs: ['centroids'], outputs: ['c_norm2'], attributes: { axes: attr.ints([1]), keepdims: attr.int(0) } },
      ...(givenNorms ? [] : [{ op: 'ReduceSumSquare', inputs: ['x'], outputs: ['x_norm2'], attributes: { axes: attr.ints([1]), keepdims: attr.int(0) } }]),
      {
        op: 'Gemm',
        inputs: ['x', 'centroids', 'c_norm2'],
        outputs: ['partial'],
        attributes: { transB: attr.int(1), alpha: attr.float(-2), beta: attr.float(1) },
      },
      {
        op: 'ArgMin',
        inputs: ['partial'],
        outputs: ['index_i64'],
        // select_last_index=0: equal distances resolve to the lowest centroid index.
        attributes: { axis: attr.int(1), keepdims: attr.int(0), select_last_index: attr.int(0) },
      },
      { op: 'Cast', inputs: ['index_i64'], outputs: ['index'], attributes: { to: attr.int(OnnxType.INT32) } },
      { op: 'ReduceMin', inputs: ['partial'], outputs: ['partial_min'], attributes: { axes: attr.ints([1]), keepdims: attr.int(0) } },
      { op: 'Add', inputs: ['partial_min', 'x_norm2'], outputs: ['dist2_raw'] },
      { op: 'Max', inputs: ['dist2_raw', 'zero'], outputs: ['dist2'] },
    ],
  };
  return encodeModel(graph);
}

/**
 * sums[index[i]] += x[i] over the rows of x (ScatterND add into `zeros`, k × d), which costs one
 * streaming pass over x instead of a one-hot GEMM (k× the FLOPs) or a JS loop (measured 50k × 768,
 * k = 50: assignment 31 ms, + sums 6 ms; a one-hot Gemm 40 ms, the JS float64 loop 55–65 ms).
 * Must run in a session with ONE intra-op thread: with more, ORT's CPU ScatterND splits the rows
 * across threads that add into the same output rows unsynchronized — lost updates (sums off by
 * whole rows) that change from call to call, so k-means fits differed between processes.
 * Single-threaded it adds the rows in order: the same bytes every time.
 */
export function scatterAddRowsModel(): Uint8Array {
  const graph: OnnxGraph = {
    name: 'scatter_add_rows',
    initializers: [{ name: 'axis1', elemType: OnnxType.INT64, dims: [1], values: [1] }],
    inputs: [
      { name: 'zeros', elemType: F, dims: ['k', 'd'] },
      { name: 'index', elemType: OnnxType.INT32, dims: ['n'] },
      { name: 'x', elemType: F, dims: ['n', 'd'] },
    ],
    outputs: [{ name: 'sums', elemType: F, dims: ['k', 'd'] }],
    nodes: [
      { op: 'Cast', inputs: ['index'], outputs: ['index_i64'], attributes: { to: attr.int(OnnxType.INT64) } },
      { op: 'Unsqueeze', inputs: ['index_i64', 'axis1'], outputs: ['index_col'] },
      { op: 'ScatterND', inputs: ['zeros', 'index_col', 'x'], outputs: ['sums'], attributes: { reduction: attr.string('add') } },
    ],
  };
  return encodeModel(graph);
}

/** rowDots: x · v as one MatMul [n, d] × [d, 1] (MLAS's matrix-vector path). */
export function rowDotsModel(): Uint8Array {
  const graph: OnnxGraph = {
    name: 'row_dots',
    inputs: [
      { name: 'x', elemType: F, dims: ['n', 'd'] },
      { name: 'v', elemType: F, dims: ['d', 1] },
    ],
    outputs: [{ name: 'dots', elemType: F, dims: ['n', 1] }],
    nodes: [{ op: 'MatMul', inputs: ['x', 'v'], outputs: ['dots'] }],
  };
  return encodeModel(graph);
}
