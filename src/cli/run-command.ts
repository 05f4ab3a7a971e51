import { join } from 'node:path';
import type { Command } from 'commander';
import { runBatch, type RunSummary } from '../batch/run.js';
import type { Logger } from '../runtime/logging.js';
import { configFromEnv, DEFAULT_PROBE_MARGIN, loadConfigFile, parseConfig, runConfigSchema } from '../shared/config.js';
import { joinPath, storageFor } from '../storage/index.js';
import { ensureSample, SAMPLE } from './sample.js';

export interface CliContext {
  logger: Logger;
  exitCode: number;
}

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** The flags shared by run and replay: inputs, ranking, k-means, kernel. */
export function addRunOptions(cmd: Command): Command {
  return cmd
    .option('--input <path>', 'Parquet/JSONL file, folder or glob; repeat for several', collect)
    .option('--output <dir>', 'output folder (NeMo layout)')
    .option('--n-clusters <k>', 'number of k-means clusters (taken from --centroids when given)')
    .option('--eps <e>', 'duplicates are clips with cosine_sim_score >= 1 - eps; without it the run stops after pairwise')
    .option('--centroids <file.npy>', "NeMo kmeans_centroids.npy (float32 [k, dim]) to skip k-means")
    .option('--which-to-keep <mode>', 'ranking inside a cluster: hard (keep outliers), easy (keep central) or random (seeded id hash) (default: hard)')
    .option('--ranking <col:asc|desc,...>', 'rank by metadata columns instead; id ascending breaks ties')
    .option('--metadata-fields <a,b>', 'input columns carried through to kmeans_results (and usable by --ranking)')
    .option('--distance-metric <m>', 'distance to centroid used for ranking: cosine or l2 (default: cosine)')
    .option('--id-field <name>', 'id column (default: id)')
    .option('--embedding-field <name>', 'embedding column (default: embedding)')
    .option('--init <method>', 'k-means init: k-means++, k-means|| or random (default: k-means++)')
    .option('--max-iter <n>', 'k-means iterations at most (default: 300)')
    .option('--tol <t>', 'k-means tolerance, relative to the data variance (default: 1e-4)')
    .option('--seed <n>', 'seed for k-means and the random ranking (default: 42)')
    .option('--n-init <n>', 'k-means runs with different seeds; the best is kept (default: 1)')
    .option('--fit-fraction <f>', 'fit k-means on this fraction of rows, assign all (default: 1)')
    .option('--pairwise-batch-size <n>', 'columns per pairwise block (default: 1024)')
    .option('--backend <name>', 'kernel backend: cpu (onnxruntime), gpu (gpu.js, falls back to cpu) or js (default: cpu)')
    .option('--probe <n>', 'clusters a clip is compared in: 1 = its own (NeMo semantics), 2 = also its second-nearest when within --probe-margin (default: 1)')
    .option('--probe-margin <m>', `with --probe 2: probe a clip when l2 to its second centroid minus l2 to its own is below m (default: ${DEFAULT_PROBE_MARGIN})`)
    .option('--batch-rows <n>', 'rows per input batch (default: 16384)')
    .option('--reader <name>', 'Parquet decoder: duckdb (native) or parquet-wasm (default: duckdb)')
    .option('--memory-budget-mb <n>', 'keep normalized embeddings in memory up to this size, else spill to disk (default: 1024)')
    .option('--no-clear-output', 'refuse to run when the output folder already holds results (default: clear them)')
    .option('--storage-options <json>', 'for s3:// paths: {"endpoint", "region", "forcePathStyle", "accessKeyId", "secretAccessKey"} (default: the AWS env/config chain)')
    .option('--config <file>', 'YAML/JSON config with the same keys as these flags (kebab-case); flags override it')
    .option('--json', 'print summary.json on stdout instead of the human summary');
}

/** Merge defaults < config file < SEMDEDUP_* env < flags, and validate. */
export function resolveRunConfig(opts: Record<string, unknown>) {
  const { config: configPath, json: _json, sample: _sample, verbose: _verbose, ...flags } = opts;
  const fileLayer = typeof configPath === 'string' ? loadConfigFile(configPath) : {};
  // commander sets clearOutput=true by default for --no-clear-output; only an explicit "no" counts.
  if (flags.clearOutput === true) delete flags.clearOutput;
  const keys = Object.keys(runConfigSchema.shape);
  return parseConfig(runConfigSchema, [fileLayer, configFromEnv(keys), flags], typeof configPath === 'string' ? `config (${configPath} + flags)` : 'options');
}

export function printHumanSummary(summary: RunSummary, outputDir: string): void {
  const dup = summary.duplicates === null ? 'no --eps given: pairwise scores written, duplicates not selected' : `${summary.duplicates} duplicates (eps ${summary.config.eps}), ${summary.rows - summary.duplicates} clips kept`;
  const t = Object.entries(summary.timings).map(([k, v]) => `${k} ${v.toFixed(2)}s`).join(', ');
  process.stdout.write(
    `semdedup: ${summary.rows} clips in ${summary.clusters} clusters → ${dup}; ${summary.rejected_rows} rows rejected\n` +
      `  backend: ${summary.backend} (${summary.backend_description})\n` +
      `  output:  ${outputDir}\n` +
      `  time:    ${t}\n` +
      (summary.probe
        ? `  probe:   ${summary.probe.probed_clips} clips probed into a 2nd cluster (margin ${summary.probe.probe_margin}), ${summary.probe.extra_pairs} extra pairs (${summary.probe.pairs_ratio}× a single probe)\n`
        : ''),
  );
}

export function registerRunCommand(program: Command, ctx: CliContext): void {
  addRunOptions(program.command('run').description('batch semantic dedup: Parquet/JSONL embeddings in, NeMo Curator output layout out'))
    .option('--sample', `run on the bundled sample (${SAMPLE.rows} generated clips, no broker needed)`)
    .option('--resume', 'continue the partial run a killed or failed run of this output left: reuse its k-means, assignment and finished clusters; refused (exit 2) when inputs or settings differ (default: start over)')
    .addHelpText(
      'after',
      `
Examples:
  semdedup run --input data/ --output out/ --n-clusters 50 --eps 0.01
  semdedup run --input 'emb/*.parquet' --output out/ --centroids kmeans_centroids.npy --eps 0.01
  semdedup run --input 's3://bucket/emb/*.parquet' --output s3://bucket/dedup/ --n-clusters 50 --eps 0.01
  semdedup run --sample                       # what npm start does
  semdedup run --input data/ --output out/ --n-clusters 50 --eps 0.01 --resume   # after a crash or kill

Outputs (in --output): kmeans_results/centroid=K/*.parquet, kmeans_centroids.npy,
pairwise_results/cluster_K.parquet, duplicates/*.parquet (with --eps), rejected/ (when rows were
refused), semdedup.duckdb, summary.json (written last). The output is built in
.<output>.semdedup-partial/ beside it and published by one rename; a killed run leaves nothing in
--output, and --resume continues from what it finished. Exit codes: 0 ok, 2 bad input, 1 failure.`,
    )
    .action(async (opts: Record<string, unknown>) => {
      if (opts.sample) {
        const samplePath = await ensureSample(ctx.logger);
        opts.input ??= [samplePath];
        opts.output ??= join('out', 'sample');
        opts.nClusters ??= String(SAMPLE.clusters);
        opts.eps ??= '0.01';
        opts.metadataFields ??= 'video_id,duration_s,frame_count';
      }
      const config = resolveRunConfig(opts);
      const summary = await runBatch(config, { logger: ctx.logger });
      if (opts.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
      else printHumanSummary(summary, config.output);
      if ((await storageFor(config.output, config.storageOptions).stat(joinPath(config.output, 'summary.json')))?.kind !== 'file') ctx.exitCode = 1;
    });
}
