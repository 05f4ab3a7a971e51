// Bundles the compiled CLI (dist/src/cli/main.js and what it imports) into dist/cli/, one chunk
// per command (esbuild code splitting follows main.ts's dynamic imports). Why: Node 20 loads
// ES modules file by file (resolve, read, compile) and has no compile cache; apache-arrow, rxjs
// and zod alone are hundreds of files, ~0.3 s of every `semdedup run` start. Packages with native
// code, WebAssembly, workers or lazy `require`s stay external and load from node_modules as usual.
// Without esbuild (a devDependency, also used by tsx) the bundle is skipped and bin/semdedup.mjs runs dist/src.
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist', 'cli');
rmSync(outdir, { recursive: true, force: true });

let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  console.warn('bundle-cli: esbuild not found; the CLI runs unbundled from dist/src');
  process.exit(0);
}

await esbuild.build({
  entryPoints: { main: join(root, 'dist', 'src', 'cli', 'main.js') },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Bundled CommonJS (commander) calls require() for Node built-ins.
  banner: { js: "import { createRequire as __semdedupCreateRequire } from 'node:module'; const require = __semdedupCreateRequire(import.meta.url);" },
  external: [
    '@aws-sdk/*',
    '@duckdb/*',
    'cli-progress',
    'gpu.js',
    'kafkajs',
    'onnxruntime-node',
    'parquet-wasm',
    'pino',
    'pino-pretty',
    'prom-client',
    'yaml',
  ],
  logLevel: 'warning',
});
