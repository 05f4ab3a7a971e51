import { GPU } from 'gpu.js';
import type { IKernelRunShortcut, Texture } from 'gpu.js';
import { InputError } from '../../shared/errors.js';
import { createCpuKernel } from '../cpu/index.js';
import { preferFirstIdentical } from '../first-identical-row.js';
import type { NearestCentroidResult, RankedMaxInput, RankedMaxResult, SimilarityKernel } from '../types.js';

export interface GpuKernelOptions {
  /** Threads for the cpu kernel used when no GPU is found. */
  readonly threads?: number;
  /** Told once when the backend falls back to cpu. */
  readonly warn?: (message: string) => void;
  /**
   * Run the gpu.js kernels in this gpu.js mode (e.g. 'cpu', 'webasm', 'webgl2') even if it is not
   * a real GPU — for tests of the kernel code on machines without one. Defaults to the env var
   * SEMDEDUP_GPU_FORCE_MODE; unset means detect and fall back.
   */
  readonly forceMode?: string;
}

/** gpu.js modes that run on a GPU. 'webasm' and 'cpu' are gpu.js's own CPU fallbacks. */
const GPU_MODES = new Set(['headlessgl', 'webgl', 'webgl2', 'webgpu']);

/** A GL context can exist without a GPU (Mesa llvmpipe, SwiftShader); those do not count. */
const SOFTWARE_RENDERER = /llvmpipe|softpipe|swiftshader|software|lavapipe/i;

/** Largest query or candidate block per kernel launch: keeps textures under common size limits. */
const BLOCK = 4096;

/**
 * Kernels in gpu.js's kernel language (a JavaScript subset compiled to GLSL/WGSL/wasm), given as
 * source text so no TypeScript transpiler can rewrite them. Flat row-major arrays, loop bounds
 * passed as arguments (bounded by loopMaxIterations).
 */
const DOT_SOURCE = `function (queries, candidates, dim) {
  let sum = 0;
  const qo = this.thread.y * dim;
  const co = this.thread.x * dim;
  for (let k = 0; k < dim; k++) {
    sum += queries[qo + k] * candidates[co + k];
  }
  return sum;
}`;

// Output [m, 2]: row 0 the masked max, row 1 its first index (-1 when nothing ranks before).
const RANKED_MAX_SOURCE = `function (sim, queryPos, candidatePos, n) {
  const q = this.thread.x;
  let best = 0;
  let bestIndex = -1;
  for (let j = 0; j < n; j++) {
    if (candidatePos[j] < queryPos[q]) {
      const v = sim[q][j];
      if (bestIndex < 0 || v > best) {
        best = v;
        bestIndex = j;
      }
    }
  }
  if (this.thread.y === 0) {
    return best;
  }
  return bestIndex;
}`;

// Direct (x - c)² rather than the expanded form: on a GPU there is no GEMM to reuse, and this
// avoids cancellation.
const DIST2_SOURCE = `function (x, centroids, dim) {
  let sum = 0;
  const xo = this.thread.y * dim;
  const co = this.thread.x * dim;
  for (let k = 0; k < dim; k++) {
    const diff = x[xo + k] - centroids[co + k];
    sum += diff * diff;
  }
  return sum;
}`;

// Output [n, 2]: row 0 the min distance, row 1 the lowest index reaching it.
const ARGMIN_SOURCE = `function (dist, k) {
  const i = this.thread.x;
  let best = dist[i][0];
  let bestIndex = 0;
  for (let c = 1; c < k; c++) {
    const v = dist[i][c];
    if (v < best) {
      best = v;
      bestIndex = c;
    }
  }
  if (this.thread.y === 0) {
    return best;
  }
  return bestIndex;
}`;

type Detection = { mode: string; why?: undefined } | { mode?: undefined; why: string };

/** What gpu.js would run on here, and whether that is a GPU. */
async function detectGpuMode(): Promise<Detection> {
  let auto: string;
  let renderer = '';
  try {
    const probe = new GPU();
    auto = probe.mode;
    if (auto === 'headlessgl' || auto === 'webgl' || auto === 'webgl2') renderer = glRenderer(probe);
    void probe.destroy();
  } catch (err) {
    return { why: `gpu.js failed to start (${(err as Error).message})` };
  }
  if (GPU_MODES.has(auto) && !SOFTWARE_RENDERER.test(renderer)) return { mode: auto };
  // WebGPU is never auto-selected by gpu.js: ask for an adapter ourselves.
  if (GPU.isWebGPUSupported && (await GPU.isWebGPUAvailable().catch(() => false))) return { mode: 'webgpu' };
  const what = renderer ? `mode ${auto}, software renderer ${renderer}` : `mode ${auto}`;
  return { why: `no GPU adapter found by gpu.js (${what})` };
}

/** The GL renderer string, via a throwaway kernel (gpu.js creates its context lazily). */
function glRenderer(gpu: GPU): string {
  try {
    const k = gpu.createKernel('function () { return 1; }', { output: [1] });
    k();
    const gl = (k as unknown as { context?: WebGLLikeContext }).context;
    if (!gl) return '';
    const ext = gl.getExtension('WEBGL_debug_renderer_info') as { UNMASKED_RENDERER_WEBGL: number } | null;
    return String(gl.getParameter(ext ? ext.UNMASKED_RENDERER_WEBGL : gl.RENDERER) ?? '');
  } catch {
    return '';
  }
}

interface WebGLLikeContext {
  readonly RENDERER: number;
  getExtension(name: string): unknown;
  getParameter(name: number): unknown;
}

/** Read a kernel result (sync value, Promise on webgpu, or texture in pipeline mode) as rows. */
async function readRows(result: unknown): Promise<Float32Array[]> {
  const value = await result;
  const arr = typeof (value as Texture).toArray === 'function' ? await (value as Texture).toArray() : value;
  return arr as Float32Array[];
}

/**
 * gpu.js backend. Uses a real GPU when gpu.js has one (headless-gl or WebGPU with a hardware
 * adapter); otherwise warns and returns the cpu kernel, named 'cpu' so summaries record what ran.
 */
export async function createGpuKernel(options: GpuKernelOptions = {}): Promise<SimilarityKernel> {
  const forced = options.forceMode ?? (process.env.SEMDEDUP_GPU_FORCE_MODE || undefined);
  const detection: Detection = forced ? { mode: forced } : await detectGpuMode();
  if (detection.mode === undefined) {
    const why = detection.why;
    options.warn?.(`gpu backend: ${why}; falling back to cpu`);
    const cpu = await createCpuKernel({ threads: options.threads });
    return { ...cpu, name: 'cpu', description: `gpu requested, fell back to cpu: ${why} (${cpu.description})` };
  }
  return createGpuJsKernel(detection.mode, forced !== undefined);
}

function createGpuJsKernel(mode: string, forced: boolean): SimilarityKernel {
  let gpu: GPU;
  try {
    gpu = new GPU({ mode: mode as 'gpu' });
  } catch (err) {
    throw new InputError(`gpu backend: gpu.js mode "${mode}" is not available here (${(err as Error).message})`, {
      cause: err,
      context: { field: 'SEMDEDUP_GPU_FORCE_MODE' },
    });
  }
  const settings = {
    precision: 'single' as const,
    dynamicOutput: true,
    dynamicArguments: true,
    // Loop bounds are runtime arguments; GL needs a compile-time cap. BLOCK bounds n and k.
    loopMaxIterations: Math.max(BLOCK, 1 << 16),
    output: [1, 1],
  };
  // The similarity/distance matrices stay on the device (pipeline) for the reduction kernels.
  // immutable: gpu.js 2.24 reuses a mutable pipeline output across setOutput() resizes and
  // returns the stale shape (seen in cpu mode); a fresh output per call, deleted after use, is safe.
  const intermediate = { ...settings, pipeline: true, immutable: true };
  const dot = gpu.createKernel(DOT_SOURCE, intermediate);
  const rankedMaxReduce = gpu.createKernel(RANKED_MAX_SOURCE, settings);
  const dist2 = gpu.createKernel(DIST2_SOURCE, intermediate);
  const argmin = gpu.createKernel(ARGMIN_SOURCE, settings);

  const launch = (k: IKernelRunShortcut, output: number[], ...args: unknown[]): unknown => {
    k.setOutput(output);
    return (k as unknown as (...a: unknown[]) => unknown)(...args);
  };
  /** Free a pipeline intermediate (a texture or buffer on GPU modes, a plain array otherwise). */
  const release = (value: unknown): void => {
    const del = (value as { delete?: () => void } | null)?.delete;
    if (typeof del === 'function') del.call(value);
  };

  async function rankedMax({ queries, queryPos, candidates, candidatePos, dim }: RankedMaxInput): Promise<RankedMaxResult> {
    const m = queryPos.length;
    const score = new Float32Array(m).fill(-Infinity);
    const index = new Int32Array(m).fill(-1);
    let maxPos = -Infinity;
    for (let q = 0; q < m; q++) maxPos = Math.max(maxPos, queryPos[q]!);
    // Candidates at or after the last query never count (candidatePos ascends).
    let used = 0;
    while (used < candidatePos.length && candidatePos[used]! < maxPos) used++;
    // Positions travel as float32 on GL; integers below 2^24 are exact, ranks stay far below.
    const qposF = Float32Array.from(queryPos);
    for (let q0 = 0; q0 < m; q0 += BLOCK) {
      const q1 = Math.min(m, q0 + BLOCK);
      const qBlock = queries.subarray(q0 * dim, q1 * dim);
      const qposBlock = qposF.subarray(q0, q1);
      for (let c0 = 0; c0 < used; c0 += BLOCK) {
        const c1 = Math.min(used, c0 + BLOCK);
        const sim = await launch(dot, [c1 - c0, q1 - q0], qBlock, candidates.subarray(c0 * dim, c1 * dim), dim);
        const cposBlock = Float32Array.from(candidatePos.subarray(c0, c1));
        const [best, bestIndex] = await readRows(launch(rankedMaxReduce, [q1 - q0, 2], sim, qposBlock, cposBlock, c1 - c0));
        release(sim);
        for (let q = q0; q < q1; q++) {
          const i = bestIndex![q - q0]!;
          // Later blocks hold later-ranked candidates: they win only on a strictly larger score.
          if (i >= 0 && best![q - q0]! > score[q]!) {
            score[q] = best![q - q0]!;
            index[q] = i + c0;
          }
        }
      }
    }
    preferFirstIdentical(index, candidates, used, dim);
    return { score, index };
  }

  async function nearestCentroid(x: Float32Array, centroids: Float32Array, dim: number): Promise<NearestCentroidResult> {
    const n = Math.floor(x.length / dim);
    const k = Math.floor(centroids.length / dim);
    const index = new Int32Array(n);
    const out = new Float32Array(n);
    if (n === 0) return { index, dist2: out };
    if (k === 0) throw new InputError('nearestCentroid needs at least one centroid', { context: { field: 'centroids' } });
    if (k > BLOCK) throw new InputError(`gpu backend supports at most ${BLOCK} centroids, got ${k}`, { context: { field: 'centroids' } });
    for (let r0 = 0; r0 < n; r0 += BLOCK) {
      const r1 = Math.min(n, r0 + BLOCK);
      const d2 = await launch(dist2, [k, r1 - r0], x.subarray(r0 * dim, r1 * dim), centroids.subarray(0, k * dim), dim);
      const [best, bestIndex] = await readRows(launch(argmin, [r1 - r0, 2], d2, k));
      release(d2);
      out.set(best!, r0);
      for (let i = r0; i < r1; i++) index[i] = bestIndex![i - r0]!;
    }
    preferFirstIdentical(index, centroids, k, dim);
    return { index, dist2: out };
  }

  return {
    name: 'gpu',
    description: `gpu.js ${mode}${forced ? ' (forced, not auto-detected)' : ''}`,
    rankedMax,
    nearestCentroid,
    async close() {
      await gpu.destroy();
    },
  };
}
