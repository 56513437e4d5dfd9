// Option checks for the public API, sharp-style: each names the function, the
// option and what was expected, and throws INVALID_ARGUMENT.
import { invalidArgument } from './errors.js';
// A cycle (tensor.ts imports this file), harmless: Tensor is only read inside functions.
import { Tensor } from './tensor.js';

export const DTYPES = ['f32', 'f16', 'bf16', 'i32', 'i64', 'u8'] as const;
export type DType = (typeof DTYPES)[number];
export type FloatDType = 'f32' | 'f16' | 'bf16';
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function checkOptions(fn: string, options: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (options === undefined) return {};
  if (!isPlainObject(options)) throw invalidArgument(`${fn}: options must be an object, got ${describe(options)}`);
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) {
      throw invalidArgument(`${fn}: unknown option '${key}' (expected one of: ${allowed.join(', ')})`);
    }
  }
  return options;
}

export function checkShape(fn: string, shape: unknown): number[] {
  if (!Array.isArray(shape)) throw invalidArgument(`${fn}: shape must be an array of integers, got ${describe(shape)}`);
  if (shape.length > 8) throw invalidArgument(`${fn}: shape [${shape.join(', ')}] has more than 8 dimensions`);
  shape.forEach((d, i) => {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw invalidArgument(`${fn}: shape[${i}] must be a non-negative integer, got ${describe(d)}`);
    }
  });
  return [...shape];
}

export function checkDType(fn: string, dtype: unknown, fallback: DType): DType {
  if (dtype === undefined) return fallback;
  if (typeof dtype !== 'string' || !(DTYPES as readonly string[]).includes(dtype)) {
    throw invalidArgument(`${fn}: dtype must be one of ${DTYPES.join(', ')}, got ${describe(dtype)}`);
  }
  return dtype as DType;
}

export function checkDevice(fn: string, device: unknown): string {
  if (device === undefined) return 'cpu';
  if (typeof device !== 'string' || !/^(cpu|cuda(:\d{1,3})?)$/.test(device)) {
    throw invalidArgument(`${fn}: device must be 'cpu', 'cuda' or 'cuda:N', got ${describe(device)}`);
  }
  return device === 'cuda' ? 'cuda:0' : device;
}

export function checkBoolean(fn: string, name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw invalidArgument(`${fn}: ${name} must be a boolean, got ${describe(value)}`);
  return value;
}

export function checkNumber(fn: string, name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw invalidArgument(`${fn}: ${name} must be a finite number, got ${describe(value)}`);
  }
  return value;
}

/** An integer in [lo, hi]; `fallback` (when given) stands in for undefined. */
export function checkInt(fn: string, name: string, value: unknown, lo: number, hi: number, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < lo || value > hi) {
    throw invalidArgument(`${fn}: ${name} must be an integer in [${lo}, ${hi}], got ${describe(value)}`);
  }
  return value;
}

/** A finite number in [lo, hi] (hi may be Infinity); `fallback` (when given) stands in for undefined. */
export function checkNumberIn(fn: string, name: string, value: unknown, lo: number, hi: number, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < lo || value > hi) {
    throw invalidArgument(`${fn}: ${name} must be a number in [${lo}, ${hi}], got ${describe(value)}`);
  }
  return value;
}

/** Text with something in it: '' and whitespace alone are refused; `fallback` (when given) stands in for undefined. */
export function checkString(fn: string, name: string, value: unknown, fallback?: string): string {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'string' || value.trim().length === 0) throw invalidArgument(`${fn}: ${name} must be a non-empty string, got ${describe(value)}`);
  return value;
}

/** A file or folder path: any string but ''. */
export function checkPath(fn: string, name: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw invalidArgument(`${fn}: ${name} must be a non-empty string, got ${describe(value)}`);
  return value;
}

/** A Tensor (disposed or not: the op that reads it says so). */
export function checkTensor<T extends Tensor = Tensor>(fn: string, name: string, value: unknown): T {
  if (!(value instanceof Tensor)) throw invalidArgument(`${fn}: ${name} must be a Tensor, got ${describe(value)}`);
  return value as T;
}

/** A Tensor, or undefined for undefined and null (an optional input left out). */
export function checkOptionalTensor<T extends Tensor = Tensor>(fn: string, name: string, value: unknown): T | undefined {
  if (value === undefined || value === null) return undefined;
  return checkTensor<T>(fn, name, value);
}

/** A seed or offset: a non-negative safe integer or a BigInt below 2^64. */
export function checkU64(fn: string, name: string, value: unknown, fallback: number | bigint): number | bigint {
  if (value === undefined) return fallback;
  if (typeof value === 'bigint') {
    if (value < 0n || value >= 1n << 64n) throw invalidArgument(`${fn}: ${name} must be in [0, 2^64), got ${value}`);
    return value;
  }
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalidArgument(`${fn}: ${name} must be a non-negative integer or a BigInt, got ${describe(value)}`);
  }
  return value;
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'object') return value.constructor?.name ? `a ${value.constructor.name}` : 'an object';
  return `${typeof value} ${String(value)}`;
}
