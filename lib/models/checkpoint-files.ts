// What both checkpoint loaders share: the loaded-component shape, path
// tests, and reading named tensors of one safetensors file onto a device.
import { statSync } from 'node:fs';

import { loadSafetensors } from '../io/safetensors.js';
import type { Tensor } from '../tensor.js';
import type { Device, DType } from '../validate.js';

export interface LoadedComponent<C> {
  config: C;
  /** Parameters in layout order, named as diffusers/transformers name them. */
  weights: Map<string, Tensor>;
  /** The safetensors files read. */
  files: string[];
}

/**
 * Named tensors of one safetensors file on `device`. On the CPU in one read;
 * elsewhere one tensor at a time (read to the host, copied, host copy freed),
 * so the host never holds more than one weight of a multi-GB checkpoint.
 */
export async function loadNamed(file: string, names: string[], dtype: DType | undefined, device: Device): Promise<Map<string, Tensor>> {
  if (device === 'cpu') return loadSafetensors(file, { names, dtype });
  const out = new Map<string, Tensor>();
  try {
    for (const name of names) {
      const [host] = (await loadSafetensors(file, { names: [name], dtype })).values();
      try {
        out.set(name, await host.to(device));
      } finally {
        host.dispose();
      }
    }
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  }
  return out;
}

export function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

export function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
