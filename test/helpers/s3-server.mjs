/**
 * s3rver (an S3-compatible test server) in a process of its own, for test/integration/s3.test.ts.
 * Why a separate process: s3rver's listing continuation tokens use DES, which OpenSSL 3 only
 * offers under `node --openssl-legacy-provider`, a flag the test workers should not need.
 *
 * Usage: node --openssl-legacy-provider s3-server.mjs <directory> <request-log> <bucket>
 * Prints the port it listens on (127.0.0.1, chosen by the OS), appends one JSON line per request
 * (method, bucket/key, Range header) to the log, and exits when its stdin closes.
 */
import { appendFileSync } from 'node:fs';
import S3rver from 's3rver';

const [directory, requestLog, bucket] = process.argv.slice(2);
const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: bucket }] });
const { port } = await server.run();
server.httpServer.on('request', (req) => {
  const key = decodeURIComponent((req.url ?? '').split('?')[0].slice(1));
  appendFileSync(requestLog, JSON.stringify({ method: req.method, key, range: req.headers.range ?? null }) + '\n');
});
process.stdout.write(`${port}\n`);
process.stdin.on('end', () => void server.close().finally(() => process.exit(0)));
process.stdin.resume();
