// Does the broker serve every protocol version kafkajs will send it?
//   node scripts/kafka/check-protocol.mjs [host:port]     (default 127.0.0.1:9092)
//
// kafkajs picks min(its newest implemented version, broker's max) per API and never looks at the
// broker's *min* version (kafkajs/src/protocol/requests/index.js `lookup`), so an API whose
// oldest served version is newer than kafkajs's newest breaks at request time. This asks the
// broker for its ranges (ApiVersions v0, raw TCP) and checks each API kafkajs implements.
// Exit 1 when some API would be sent an unsupported version. See docs/KAFKA.md.
import net from 'node:net';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
// Internal kafkajs modules (no "exports" map in kafkajs 2.2.4, so deep requires resolve).
const { requests } = require('kafkajs/src/protocol/requests/index.js');
const apiKeys = require('kafkajs/src/protocol/requests/apiKeys.js');

const [host, portText] = (process.argv[2] ?? '127.0.0.1:9092').split(':');
const port = Number(portText ?? 9092);

function apiVersionsV0() {
  const clientId = Buffer.from('semdedup-protocol-check');
  const header = Buffer.alloc(2 + 2 + 4 + 2);
  header.writeInt16BE(18, 0); // ApiVersions
  header.writeInt16BE(0, 2); // version 0: understood by every broker
  header.writeInt32BE(1, 4); // correlation id
  header.writeInt16BE(clientId.length, 8);
  const body = Buffer.concat([header, clientId]);
  const size = Buffer.alloc(4);
  size.writeInt32BE(body.length, 0);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port }, () => socket.write(Buffer.concat([size, body])));
    let buf = Buffer.alloc(0);
    socket.setTimeout(5000, () => socket.destroy(new Error(`no answer from ${host}:${port}`)));
    socket.on('error', reject);
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 4 || buf.length < 4 + buf.readInt32BE(0)) return;
      socket.end();
      let at = 8; // size + correlation id
      const errorCode = buf.readInt16BE(at);
      at += 2;
      if (errorCode !== 0) return reject(new Error(`ApiVersions error code ${errorCode}`));
      const count = buf.readInt32BE(at);
      at += 4;
      const ranges = new Map();
      for (let i = 0; i < count; i++, at += 6) {
        ranges.set(buf.readInt16BE(at), { min: buf.readInt16BE(at + 2), max: buf.readInt16BE(at + 4) });
      }
      resolve(ranges);
    });
  });
}

const broker = await apiVersionsV0();
let broken = 0;
console.log('API                           kafkajs  broker   sent  ok');
for (const [name, key] of Object.entries(apiKeys)) {
  const versions = requests[name]?.versions.map(Number) ?? [];
  if (versions.length === 0) continue; // not implemented by kafkajs: never sent
  const ours = Math.max(...versions);
  const theirs = broker.get(key);
  let sent = '-';
  let ok = 'n/a (not served; kafkajs errors only if a feature needs it)';
  if (theirs) {
    const chosen = Math.min(ours, theirs.max);
    sent = String(chosen);
    ok = chosen >= theirs.min ? 'yes' : 'NO';
    if (ok === 'NO') broken++;
  }
  const range = theirs ? `${theirs.min}-${theirs.max}` : 'none';
  console.log(`${name.padEnd(30)}${`0-${ours}`.padEnd(9)}${range.padEnd(9)}${sent.padEnd(6)}${ok}`);
}
console.log(broken === 0 ? `OK: every API kafkajs implements is served by ${host}:${port}` : `${broken} API(s) would fail`);
process.exitCode = broken === 0 ? 0 : 1;
