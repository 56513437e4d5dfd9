// Reads the PyTorch golden-value fixtures (test/fixtures/*.safetensors).
import { readFileSync } from 'node:fs';

import { tensor, type Tensor } from '../lib/index.js';

export interface FixtureTensor {
  shape: number[];
  data: Float32Array;
}

export function loadFixture(name: string): Map<string, FixtureTensor> {
  const bytes = readFileSync(new URL(`./fixtures/${name}.safetensors`, import.meta.url));
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const base = 8 + headerLength;
  const out = new Map<string, FixtureTensor>();
  for (const [key, info] of Object.entries(header)) {
    if (key === '__metadata__') continue;
    if (info.dtype !== 'F32') throw new Error(`fixture ${name}: ${key} is ${info.dtype}, expected F32`);
    const [start, end] = info.data_offsets;
    const copy = new Uint8Array(bytes.subarray(base + start, base + end));
    out.set(key, { shape: info.shape, data: new Float32Array(copy.buffer) });
  }
  return out;
}

/** Fixture entry `key` as a CPU f32 tensor. */
export function fixtureTensor(fixture: Map<string, FixtureTensor>, key: string): Tensor<'f32'> {
  const f = fixture.get(key);
  if (!f) throw new Error(`fixture has no ${key}`);
  return tensor(f.data, { shape: f.shape });
}
