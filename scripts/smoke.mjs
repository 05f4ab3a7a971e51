import { DuckDBInstance } from '@duckdb/node-api';
import * as ort from 'onnxruntime-node';
import * as pw from 'parquet-wasm';
import * as arrow from 'apache-arrow';
const inst = await DuckDBInstance.create(':memory:');
const c = await inst.connect();
const r = await c.runAndReadAll('select 42 as x, version() v');
console.log(r.getRows());
console.log(Object.keys(ort).slice(0,20));
console.log(Object.keys(pw).slice(0,40));
const gpu = await import('gpu.js');
console.log(Object.keys(gpu));
try { const g = new gpu.GPU(); console.log('gpu mode', g.mode); } catch(e) { console.log('gpu err', e.message); }
