import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNpy, writeNpy } from '../../src/assign/npy.js';
import { InputError } from '../../src/shared/errors.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'semdedup-npy-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});
const p = (name: string): string => path.join(dir, name);

function python(code: string): string {
  const r = spawnSync('python3', ['-c', code], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout;
}

function expectInputError(fn: () => unknown, ...parts: RegExp[]): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(InputError);
  for (const part of parts) expect((err as Error).message).toMatch(part);
}

describe('npy', () => {
  it('round-trips float32 arrays with a 64-byte aligned v1 header, atomically', () => {
    const data = Float32Array.from({ length: 12 }, (_, i) => i * 0.5 - 1);
    const file = p('a.npy');
    writeNpy(file, data, [3, 4]);
    const bytes = readFileSync(file);
    expect(bytes[6]).toBe(1);
    const headerLen = bytes.readUInt16LE(8);
    expect((10 + headerLen) % 64).toBe(0);
    expect(bytes.length).toBe(10 + headerLen + 48);
    const back = readNpy(file);
    expect(back.shape).toEqual([3, 4]);
    expect(Array.from(back.data)).toEqual(Array.from(data));
    writeNpy(p('b.npy'), Float32Array.from([1, 2]), [2]);
    expect(readNpy(p('b.npy')).shape).toEqual([2]);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('refuses a shape that does not match the data', () => {
    expect(() => writeNpy(p('bad.npy'), new Float32Array(5), [2, 3])).toThrow(/holds 6 values, data has 5/);
  });

  it('refuses non-npy, wrong dtype, Fortran order, big-endian and truncated files with clear messages', () => {
    const raw = (header: string, dataBytes: number, version = 1): Buffer => {
      const pad = (64 - ((version === 1 ? 10 : 12) + header.length + 1) % 64) % 64;
      const h = `${header}${' '.repeat(pad)}\n`;
      const head = Buffer.alloc(version === 1 ? 10 : 12);
      Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]).copy(head);
      if (version === 1) head.writeUInt16LE(h.length, 8);
      else head.writeUInt32LE(h.length, 8);
      return Buffer.concat([head, Buffer.from(h, 'latin1'), Buffer.alloc(dataBytes)]);
    };
    writeFileSync(p('text.npy'), 'hello world, not numpy');
    expectInputError(() => readNpy(p('text.npy')), /text\.npy is not a NumPy \.npy file/);
    writeFileSync(p('i8.npy'), raw("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }", 32));
    expectInputError(() => readNpy(p('i8.npy')), /i8\.npy has dtype <i8; expected little-endian float32/);
    writeFileSync(p('f.npy'), raw("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16));
    expectInputError(() => readNpy(p('f.npy')), /Fortran order/);
    writeFileSync(p('be.npy'), raw("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", 16));
    expectInputError(() => readNpy(p('be.npy')), /big-endian/);
    writeFileSync(p('short.npy'), raw("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", 8));
    expectInputError(() => readNpy(p('short.npy')), /truncated.*needs 16 data bytes, file has 8/);
    expectInputError(() => readNpy(p('missing.npy')), /cannot read/);
    // Version 2 and 3 headers, float64 data.
    const v2 = raw("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }", 0, 2);
    const f64 = Buffer.from(new Float64Array([1.5, -2.25]).buffer);
    writeFileSync(p('v2.npy'), Buffer.concat([v2, f64]));
    const back = readNpy(p('v2.npy'));
    expect(back.shape).toEqual([1, 2]);
    expect(Array.from(back.data)).toEqual([1.5, -2.25]);
    const v3 = raw("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 0, 3);
    writeFileSync(p('v3.npy'), Buffer.concat([v3, Buffer.from(new Float32Array([1, 2, 3]).buffer)]));
    expect(Array.from(readNpy(p('v3.npy')).data)).toEqual([1, 2, 3]);
  });

  it('numpy loads our files and we load numpy files (f4, f8, v2, Fortran refused)', () => {
    const ours = p('ours.npy');
    writeNpy(ours, Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
    const seen = JSON.parse(
      python(`import numpy as np, json; a = np.load(${JSON.stringify(ours)}); print(json.dumps({'dtype': str(a.dtype), 'shape': list(a.shape), 'v': a.tolist(), 'c': bool(a.flags['C_CONTIGUOUS'])}))`),
    ) as { dtype: string; shape: number[]; v: number[][]; c: boolean };
    expect(seen).toEqual({ dtype: 'float32', shape: [2, 3], v: [[1, 2, 3], [4, 5, 6]], c: true });

    python(
      [
        'import numpy as np',
        `d = ${JSON.stringify(dir)}`,
        "a = (np.arange(12, dtype=np.float64).reshape(3, 4) / 8)",
        "np.save(d + '/np-f8.npy', a)",
        "np.save(d + '/np-f4.npy', a.astype(np.float32))",
        "np.save(d + '/np-fortran.npy', np.asfortranarray(a.astype(np.float32)))",
        "np.save(d + '/np-i4.npy', np.arange(4, dtype=np.int32))",
        "with open(d + '/np-v2.npy', 'wb') as f: np.lib.format.write_array(f, a.astype(np.float32), version=(2, 0))",
      ].join('\n'),
    );
    const expected = Array.from({ length: 12 }, (_, i) => i / 8);
    for (const name of ['np-f8.npy', 'np-f4.npy', 'np-v2.npy']) {
      const a = readNpy(p(name));
      expect(a.shape).toEqual([3, 4]);
      expect(Array.from(a.data)).toEqual(expected);
    }
    expectInputError(() => readNpy(p('np-fortran.npy')), /Fortran order/);
    expectInputError(() => readNpy(p('np-i4.npy')), /dtype <i4/);
  });
});
