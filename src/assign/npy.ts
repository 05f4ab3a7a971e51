/**
 * NumPy `.npy` files for centroids (`kmeans_centroids.npy`, NeMo's cache format): read float32
 * or float64 C-order arrays (format versions 1–3), write float32 with a version 1 header.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import { InputError, InvariantError } from '../shared/errors.js';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

export interface NpyArray {
  readonly data: Float32Array;
  readonly shape: number[];
}

/** Read a little-endian float32/float64 C-order `.npy` file as float32. */
export function readNpy(path: string): NpyArray {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (cause) {
    throw new InputError(`cannot read ${path}: ${(cause as Error).message}`, { cause, context: { file: path } });
  }
  return parseNpy(buf, path);
}

/** Parse the bytes of a `.npy` file (`path` names it in errors). */
export function parseNpy(buf: Buffer, path: string): NpyArray {
  const fail = (problem: string): InputError => new InputError(`${path} ${problem}`, { context: { file: path } });
  if (buf.length < 10 || !MAGIC.every((b, i) => buf[i] === b)) throw fail('is not a NumPy .npy file (bad magic)');
  const major = buf[6]!;
  let headerLen: number;
  let headerStart: number;
  if (major === 1) {
    headerLen = buf.readUInt16LE(8);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) throw fail('is truncated (header)');
    headerLen = buf.readUInt32LE(8);
    headerStart = 12;
  } else {
    throw fail(`has unsupported .npy format version ${major}.${buf[7]}`);
  }
  const dataStart = headerStart + headerLen;
  if (dataStart > buf.length) throw fail('is truncated (header)');
  const header = buf.toString(major === 3 ? 'utf8' : 'latin1', headerStart, dataStart);

  const descr = /['"]descr['"]\s*:\s*['"]([^'"]+)['"]/.exec(header)?.[1];
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw fail(`has a malformed .npy header: ${header.trim()}`);
  }
  if (fortran === 'True') throw fail('is in Fortran order; save it in C order (np.ascontiguousarray) first');
  const itemSize = descr === '<f4' ? 4 : descr === '<f8' ? 8 : 0;
  if (itemSize === 0) {
    const hint = descr.startsWith('>') ? ' (big-endian)' : '';
    throw fail(`has dtype ${descr}${hint}; expected little-endian float32 (<f4) or float64 (<f8)`);
  }
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => Number(s.replace(/L$/, '')));
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw fail(`has an invalid shape (${shapeText})`);
  const count = shape.reduce((a, b) => a * b, 1);
  const bytes = count * itemSize;
  if (dataStart + bytes > buf.length) {
    throw fail(`is truncated: shape (${shape.join(', ')}) needs ${bytes} data bytes, file has ${buf.length - dataStart}`);
  }
  assertLittleEndianHost();
  const raw = buf.subarray(dataStart, dataStart + bytes);
  let data: Float32Array;
  if (itemSize === 4) {
    data =
      raw.byteOffset % 4 === 0
        ? new Float32Array(raw.buffer, raw.byteOffset, count)
        : new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + bytes));
  } else {
    const f64 =
      raw.byteOffset % 8 === 0
        ? new Float64Array(raw.buffer, raw.byteOffset, count)
        : new Float64Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + bytes));
    data = Float32Array.from(f64);
  }
  return { data, shape };
}

/** Write `data` as a float32 C-order `.npy` (version 1 header, data 64-byte aligned), atomically. */
export function writeNpy(path: string, data: Float32Array, shape: readonly number[]): void {
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) {
    throw new InvariantError(`writeNpy ${path}: shape (${shape.join(', ')}) holds ${count} values, data has ${data.length}`);
  }
  assertLittleEndianHost();
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // magic(6) + version(2) + length(2) + header + '\n' must be a multiple of 64.
  const unpadded = 10 + header.length + 1;
  header += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  if (header.length > 0xffff) throw new InvariantError(`writeNpy ${path}: header too long for format 1.0`);
  const head = Buffer.alloc(10 + header.length);
  MAGIC.forEach((b, i) => (head[i] = b));
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  head.write(header, 10, 'latin1');

  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    writeAll(fd, head);
    writeAll(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let at = 0;
  while (at < bytes.length) at += writeSync(fd, bytes, at, bytes.length - at);
}

function assertLittleEndianHost(): void {
  if (endianness() !== 'LE') throw new InvariantError('.npy support assumes a little-endian host');
}
