// Reading and writing .safetensors files (csrc/io/safetensors.h validates every
// header before any data is used; saves are atomic: temp file, fsync, rename).
import { ImprintError, invalidArgument } from '../errors.js';
import { native } from '../native.js';
import { pickleHint, pickleReason } from './pickle.js';
import { Tensor } from '../tensor.js';
import { checkDType, checkDevice, checkOptions, checkPath, describe, isPlainObject, type Device, type DType } from '../validate.js';

/** A file dtype: Imprint's plus F64, I16, I8 and BOOL, which load as f32, i32, i32 and u8. */
export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export interface SafetensorsEntryInfo {
  dtype: SafetensorsDType;
  shape: number[];
  /** [begin, end) byte range within the data section. */
  offsets: [number, number];
}

export interface SafetensorsHeader {
  /** Keyed by tensor name, in name order (an object without a prototype). */
  tensors: Record<string, SafetensorsEntryInfo>;
  metadata: Record<string, string>;
}

export interface LoadSafetensorsOptions {
  /** Only these tensors (default: all). An unknown name is an INVALID_ARGUMENT. */
  names?: readonly string[];
  /** Convert on load: floats to f32/f16/bf16, integers to i32/i64/u8. Default: the file's dtype (F64 → f32, I16/I8 → i32, BOOL → u8). */
  dtype?: DType;
  /** Default 'cpu'. Other devices load on the CPU, then copy. */
  device?: Device;
}

// Names come from files, so records are built without a prototype: a tensor
// named "__proto__" or "constructor" is an ordinary key.
function record<T>(pairs: Iterable<[string, T]>): Record<string, T> {
  const out = Object.create(null) as Record<string, T>;
  for (const [k, v] of pairs) out[k] = v;
  return out;
}

/** A reader's error, or the pickle refusal with its conversion hint when the file is a pickle checkpoint. */
function pickleInstead(e: unknown, path: string): unknown {
  if (!(e instanceof ImprintError)) return e;
  const reason = pickleReason(path);
  return reason === undefined ? e : invalidArgument(pickleHint(reason));
}

function withPickleHint<T>(read: () => T, path: string): T {
  try {
    return read();
  } catch (e) {
    throw pickleInstead(e, path);
  }
}

/** The validated header of a .safetensors file, without reading tensor data. */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const h = withPickleHint(() => native.safetensorsHeader(checkPath('readSafetensorsHeader', 'path', path)), path);
  return {
    tensors: record(h.tensors.map((e) => [e.name, { dtype: e.dtype as SafetensorsDType, shape: e.shape, offsets: e.offsets }])),
    metadata: record(h.metadata),
  };
}

/**
 * Loads tensors from a .safetensors file into a Map keyed by name (in name
 * order, or the order of `names`). The file is validated completely first.
 */
export async function loadSafetensors(path: string, options?: LoadSafetensorsOptions): Promise<Map<string, Tensor>> {
  const fn = 'loadSafetensors';
  checkPath(fn, 'path', path);
  const o = checkOptions(fn, options, ['names', 'dtype', 'device']);
  let names: string[] | null = null;
  if (o.names !== undefined) {
    if (!Array.isArray(o.names) || o.names.some((n) => typeof n !== 'string')) {
      throw invalidArgument(`${fn}: names must be an array of strings, got ${describe(o.names)}`);
    }
    names = [...(o.names as string[])];
    if (new Set(names).size !== names.length) throw invalidArgument(`${fn}: names has duplicates`);
  }
  const dtype = o.dtype === undefined ? null : checkDType(fn, o.dtype, 'f32');
  const device = checkDevice(fn, o.device);
  if (names === null) names = withPickleHint(() => native.safetensorsHeader(path), path).tensors.map((e) => e.name);
  let handles: Awaited<ReturnType<typeof native.safetensorsLoad>>;
  try {
    handles = await native.safetensorsLoad(path, names, dtype);
  } catch (e) {
    throw pickleInstead(e, path);
  }
  const loaded = handles.map((h) => new Tensor(h));
  const out = new Map<string, Tensor>();
  if (device === 'cpu') {
    loaded.forEach((x, i) => out.set(names[i], x));
    return out;
  }
  // One tensor at a time, so at most one extra CPU copy is alive; a failed
  // move frees everything loaded so far instead of leaving it to the GC.
  try {
    for (let i = 0; i < loaded.length; i++) {
      out.set(names[i], await loaded[i].to(device));
      loaded[i].dispose();
    }
  } catch (e) {
    for (const x of [...loaded, ...out.values()]) x.dispose();
    throw e;
  }
  return out;
}

/**
 * Writes CPU tensors to a .safetensors file, sorted by name, with optional
 * string metadata. Atomic: a failed save leaves any existing file unchanged.
 */
export async function saveSafetensors(path: string, tensors: Record<string, Tensor> | Map<string, Tensor>, metadata?: Record<string, string>): Promise<void> {
  const fn = 'saveSafetensors';
  checkPath(fn, 'path', path);
  const entries = tensors instanceof Map ? [...tensors.entries()] : isPlainObject(tensors) ? Object.entries(tensors) : null;
  if (entries === null) throw invalidArgument(`${fn}: tensors must be an object or Map of name → Tensor, got ${describe(tensors)}`);
  for (const [name, t] of entries) {
    if (!(t instanceof Tensor)) throw invalidArgument(`${fn}: tensor '${name}' must be a Tensor, got ${describe(t)}`);
  }
  let meta: [string, string][] = [];
  if (metadata !== undefined) {
    if (!isPlainObject(metadata)) throw invalidArgument(`${fn}: metadata must be an object of strings, got ${describe(metadata)}`);
    meta = Object.entries(metadata).map(([k, v]) => {
      if (typeof v !== 'string') throw invalidArgument(`${fn}: metadata '${k}' must be a string, got ${describe(v)}`);
      return [k, v];
    });
  }
  await native.safetensorsSave(path, entries.map(([n]) => n), entries.map(([, t]) => t.handle), meta);
}
