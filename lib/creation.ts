// Making tensors: from JavaScript data (synchronous, on the CPU), and filled or
// random tensors on any device (asynchronous, computed there).
import { randomBytes } from 'node:crypto';

import type { NativeDType } from '../typings/native.js';
import { invalidArgument } from './errors.js';
import { native } from './native.js';
import { Tensor } from './tensor.js';
import { checkDType, checkDevice, checkNumber, checkOptions, checkShape, checkU64, describe, type DType, type FloatDType } from './validate.js';

type Nested = number | bigint | Nested[];
export type TensorInput = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array | Nested[];

export interface TensorOptions<D extends DType = DType> {
  /** Required for flat data of more than one dimension; inferred from nested arrays. */
  shape?: readonly number[];
  /** Default: f32 for numbers, else the typed array's type. Uint16Array input holds raw f16/bf16 bits. */
  dtype?: D;
}

/**
 * A CPU tensor holding a copy of `data`.
 * @example tensor([[1, 2], [3, 4]])                 // f32[2, 2]
 * @example tensor(new Float32Array(6), { shape: [2, 3], dtype: 'bf16' })
 */
export function tensor<D extends DType>(data: TensorInput, options: TensorOptions<D> & { dtype: D }): Tensor<D>;
export function tensor(data: Int32Array, options?: TensorOptions<'i32'>): Tensor<'i32'>;
export function tensor(data: BigInt64Array, options?: TensorOptions<'i64'>): Tensor<'i64'>;
export function tensor(data: Uint8Array, options?: TensorOptions<'u8'>): Tensor<'u8'>;
export function tensor(data: Float32Array | Float64Array | Nested[], options?: TensorOptions<'f32'>): Tensor<'f32'>;
export function tensor(data: TensorInput, options?: TensorOptions): Tensor;
export function tensor(data: TensorInput, options?: TensorOptions): Tensor {
  const o = checkOptions('tensor', options, ['shape', 'dtype']);
  let flat: ArrayBufferView;
  let srcDtype: NativeDType;
  let inferred: number[];
  if (ArrayBuffer.isView(data) && !(data instanceof DataView)) {
    inferred = [(data as { length: number }).length];
    if (data instanceof Float32Array) srcDtype = 'f32';
    else if (data instanceof Float64Array) [flat, srcDtype] = [Float32Array.from(data), 'f32'];
    else if (data instanceof Int32Array) srcDtype = 'i32';
    else if (data instanceof BigInt64Array) srcDtype = 'i64';
    else if (data instanceof Uint8Array) srcDtype = 'u8';
    else if (data instanceof Uint16Array) {
      if (o.dtype !== 'f16' && o.dtype !== 'bf16') {
        throw invalidArgument("tensor: Uint16Array data holds raw half-precision bits; pass dtype 'f16' or 'bf16'");
      }
      srcDtype = o.dtype;
    } else throw invalidArgument(`tensor: unsupported data ${describe(data)}`);
    flat ??= data;
  } else if (Array.isArray(data)) {
    const { values, shape } = flatten(data);
    inferred = shape;
    const dtype = checkDType('tensor', o.dtype, 'f32');
    [flat, srcDtype] = fromNumbers(values, dtype);
  } else {
    throw invalidArgument(`tensor: data must be a typed array or a (nested) array of numbers, got ${describe(data)}`);
  }
  const shape = o.shape === undefined ? inferred : checkShape('tensor', o.shape);
  const dtype = checkDType('tensor', o.dtype, srcDtype as DType);
  return new Tensor(native.fromBuffer(flat, shape, srcDtype, dtype));
}

function flatten(data: Nested[]): { values: (number | bigint)[]; shape: number[] } {
  const shape: number[] = [];
  for (let level: Nested = data; Array.isArray(level); level = level[0]) {
    shape.push(level.length);
    if (level.length === 0) break;
  }
  const values: (number | bigint)[] = [];
  const walk = (node: Nested, dim: number, path: string): void => {
    if (dim === shape.length) {
      if (Array.isArray(node)) throw invalidArgument(`tensor: ragged nested array at ${path}`);
      if (typeof node !== 'number' && typeof node !== 'bigint') {
        throw invalidArgument(`tensor: element ${path} is ${describe(node)}, not a number`);
      }
      values.push(node);
      return;
    }
    if (!Array.isArray(node) || node.length !== shape[dim]) {
      throw invalidArgument(`tensor: ragged nested array at ${path} (expected ${shape[dim]} elements)`);
    }
    node.forEach((child, i) => walk(child, dim + 1, `${path}[${i}]`));
  };
  walk(data, 0, 'data');
  return { values, shape };
}

function fromNumbers(values: (number | bigint)[], dtype: DType): [ArrayBufferView, NativeDType] {
  const asInteger = (v: number | bigint, lo: number, hi: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < lo || n > hi) throw invalidArgument(`tensor: ${v} is not a valid ${dtype} value`);
    return n;
  };
  switch (dtype) {
    case 'i32':
      return [Int32Array.from(values, (v) => asInteger(v, -(2 ** 31), 2 ** 31 - 1)), 'i32'];
    case 'u8':
      return [Uint8Array.from(values, (v) => asInteger(v, 0, 255)), 'u8'];
    case 'i64':
      return [BigInt64Array.from(values, (v) => (typeof v === 'bigint' ? BigInt.asIntN(64, v) : BigInt(asInteger(v, -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)))), 'i64'];
    default:
      return [Float32Array.from(values, (v) => Number(v)), 'f32'];
  }
}

export interface FillOptions<D extends DType = DType> {
  /** Default f32. */
  dtype?: D;
  /** 'cpu' (default), 'cuda' or 'cuda:N'. */
  device?: string;
}

/** @example await full([2, 2], 7, { dtype: 'i32' }) */
export async function full<D extends DType = 'f32'>(shape: readonly number[], value: number, options?: FillOptions<D>): Promise<Tensor<D>> {
  const o = checkOptions('full', options, ['dtype', 'device']);
  const v = checkNumber('full', 'value', value, 0);
  return new Tensor<D>(await native.full(checkShape('full', shape), checkDType('full', o.dtype, 'f32'), checkDevice('full', o.device), v));
}

export function zeros<D extends DType = 'f32'>(shape: readonly number[], options?: FillOptions<D>): Promise<Tensor<D>> {
  return full(shape, 0, options);
}

export function ones<D extends DType = 'f32'>(shape: readonly number[], options?: FillOptions<D>): Promise<Tensor<D>> {
  return full(shape, 1, options);
}

export interface RandomOptions<D extends FloatDType = FloatDType> extends FillOptions<D> {
  /** Philox key. The same seed and offset give the same values on every device. Default: random. */
  seed?: number | bigint;
  /** Counter offset in blocks of 4 values: offset k continues a stream after 4k values. Default 0. */
  offset?: number | bigint;
}

function randomSeed(): bigint {
  return randomBytes(8).readBigUInt64LE();
}

/** Uniform values in [low, high), default [0, 1). */
export async function rand<D extends FloatDType = 'f32'>(shape: readonly number[], options?: RandomOptions<D> & { low?: number; high?: number }): Promise<Tensor<D>> {
  const o = checkOptions('rand', options, ['dtype', 'device', 'seed', 'offset', 'low', 'high']);
  const low = checkNumber('rand', 'low', o.low, 0);
  const high = checkNumber('rand', 'high', o.high, 1);
  if (!(high > low)) throw invalidArgument(`rand: high (${high}) must be greater than low (${low})`);
  return new Tensor<D>(
    await native.rand(checkShape('rand', shape), checkDType('rand', o.dtype, 'f32'), checkDevice('rand', o.device),
      checkU64('rand', 'seed', o.seed, randomSeed()), checkU64('rand', 'offset', o.offset, 0), low, high),
  );
}

/** Normal values with the given mean and std (default 0 and 1), by Box-Muller on Philox. */
export async function randn<D extends FloatDType = 'f32'>(shape: readonly number[], options?: RandomOptions<D> & { mean?: number; std?: number }): Promise<Tensor<D>> {
  const o = checkOptions('randn', options, ['dtype', 'device', 'seed', 'offset', 'mean', 'std']);
  const mean = checkNumber('randn', 'mean', o.mean, 0);
  const std = checkNumber('randn', 'std', o.std, 1);
  if (std < 0) throw invalidArgument(`randn: std must not be negative, got ${std}`);
  return new Tensor<D>(
    await native.randn(checkShape('randn', shape), checkDType('randn', o.dtype, 'f32'), checkDevice('randn', o.device),
      checkU64('randn', 'seed', o.seed, randomSeed()), checkU64('randn', 'offset', o.offset, 0), mean, std),
  );
}
