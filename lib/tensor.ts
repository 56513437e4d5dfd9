// Tensor: an immutable n-dimensional array on a device. Ops return new
// tensors; memory is freed by dispose() (or `using`), and, as a safety net,
// when a forgotten tensor is garbage-collected.
import { inspect } from 'node:util';

import type { TensorHandle } from '../typings/native.js';
import { ImprintError } from './errors.js';
import { native } from './native.js';
import * as ops from './ops.js';
import { checkDType, checkDevice, checkShape, type DType } from './validate.js';

/** What data() returns for each dtype: half types are widened to Float32Array. */
export type DataOf<D extends DType> = D extends 'i32' ? Int32Array : D extends 'i64' ? BigInt64Array : D extends 'u8' ? Uint8Array : Float32Array;
export type TensorData = DataOf<DType>;
/** sum() keeps float dtypes and sums integers into i64. */
export type SumOf<D extends DType> = D extends 'f32' | 'f16' | 'bf16' ? D : 'i64';

// Tensors collected by the GC without dispose(), per device: a leak indicator.
const collectedUndisposed = new Map<string, number>();

const registry = new FinalizationRegistry<{ handle: TensorHandle; device: string }>(({ handle, device }) => {
  if (!handle.disposed) {
    handle.dispose();
    collectedUndisposed.set(device, (collectedUndisposed.get(device) ?? 0) + 1);
  }
});

export function collectedWithoutDispose(device: string): number {
  return collectedUndisposed.get(device) ?? 0;
}

export class Tensor<D extends DType = DType> {
  readonly shape: readonly number[];
  readonly dtype: D;
  readonly device: string;
  readonly #handle: TensorHandle;

  /** @internal Tensors come from tensor(), zeros(), rand() and ops, not from `new`. */
  constructor(handle: TensorHandle) {
    if (!(handle instanceof native.TensorHandle)) {
      throw new ImprintError('Tensor: use tensor(), zeros(), rand() or an op to make tensors', 'INVALID_ARGUMENT');
    }
    this.#handle = handle;
    this.shape = Object.freeze(handle.shape);
    this.dtype = handle.dtype as D;
    this.device = handle.device;
    registry.register(this, { handle, device: this.device }, this);
  }

  /** @internal The native handle, for ops. */
  get handle(): TensorHandle {
    return this.#handle;
  }

  get numel(): number {
    return this.shape.reduce((n, d) => n * d, 1);
  }

  get ndim(): number {
    return this.shape.length;
  }

  get nbytes(): number {
    return this.numel * BYTES[this.dtype];
  }

  get disposed(): boolean {
    return this.#handle.disposed;
  }

  /** Frees the tensor's memory now. Safe to call twice; later use throws DISPOSED. */
  dispose(): void {
    registry.unregister(this);
    this.#handle.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /**
   * A copy of the elements in row-major order: Float32Array for f32, f16 and
   * bf16 (half types are widened), Int32Array, BigInt64Array or Uint8Array.
   */
  async data(): Promise<DataOf<D>> {
    if (this.device === 'cpu') return this.dataSync();
    const host = await this.to('cpu');
    try {
      return host.dataSync();
    } finally {
      host.dispose();
    }
  }

  /** data() without the await, for CPU tensors. */
  dataSync(): DataOf<D> {
    const half = this.dtype === 'f16' || this.dtype === 'bf16';
    const buffer = this.#handle.dataSync(half ? 'f32' : undefined);
    return view(buffer, half ? 'f32' : this.dtype) as DataOf<D>;
  }

  /** The elements as nested JavaScript arrays (numbers; bigints for i64). */
  async toArray(): Promise<unknown> {
    const flat = Array.from(await this.data() as ArrayLike<number | bigint>);
    const nest = (offset: number, dim: number): unknown => {
      if (dim === this.shape.length) return flat[offset];
      const stride = this.shape.slice(dim + 1).reduce((n, d) => n * d, 1);
      return Array.from({ length: this.shape[dim] }, (_, i) => nest(offset + i * stride, dim + 1));
    };
    return nest(0, 0);
  }

  /**
   * The same elements under another shape (one dimension may be -1 and is
   * inferred). Synchronous and copy-free: the result shares this tensor's
   * memory, which stays alive until both are disposed.
   */
  reshape(shape: readonly number[]): Tensor<D> {
    if (!Array.isArray(shape)) throw new ImprintError('reshape: shape must be an array of integers', 'INVALID_ARGUMENT');
    const known = shape.filter((d) => d !== -1).reduce((n, d) => n * d, 1);
    const inferred = shape.filter((d) => d === -1).length;
    if (inferred > 1) throw new ImprintError('reshape: at most one dimension can be -1', 'INVALID_ARGUMENT');
    const resolved = shape.map((d) => (d === -1 ? (known === 0 ? 0 : this.numel / known) : d));
    if (inferred === 1 && !Number.isInteger(resolved[shape.indexOf(-1)])) {
      throw new ImprintError(`reshape: ${this.numel} elements do not fit shape [${shape.join(', ')}]`, 'SHAPE_MISMATCH');
    }
    return new Tensor<D>(native.reshape(this.#handle, checkShape('reshape', resolved)));
  }

  /** A copy on another device ('cpu', 'cuda', 'cuda:N'). */
  async to(device: string): Promise<Tensor<D>> {
    return new Tensor<D>(await native.to(this.#handle, checkDevice('to', device)));
  }

  /** A copy converted to another dtype (floats round to nearest even; float to int truncates and saturates). */
  async cast<E extends DType>(dtype: E): Promise<Tensor<E>> {
    if (dtype === undefined) throw new ImprintError('cast: dtype is required', 'INVALID_ARGUMENT');
    return new Tensor<E>(await native.cast(this.#handle, checkDType('cast', dtype, this.dtype)));
  }

  matmul(other: Tensor<D>, options?: ops.MatmulOptions): Promise<Tensor<D>> {
    return ops.matmul(this, other, options);
  }

  add(other: Tensor<D>): Promise<Tensor<D>> {
    return ops.add(this, other);
  }

  mul(other: Tensor<D>): Promise<Tensor<D>> {
    return ops.mul(this, other);
  }

  sum(options?: ops.SumOptions): Promise<Tensor<SumOf<D>>> {
    return ops.sum(this, options);
  }

  toString(): string {
    return `Tensor(${this.dtype}[${this.shape.join(', ')}] on ${this.device}${this.disposed ? ', disposed' : ''})`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

export const BYTES: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, i32: 4, i64: 8, u8: 1 };

function view(buffer: ArrayBuffer, dtype: DType): TensorData {
  switch (dtype) {
    case 'i32':
      return new Int32Array(buffer);
    case 'i64':
      return new BigInt64Array(buffer);
    case 'u8':
      return new Uint8Array(buffer);
    default:
      return new Float32Array(buffer);
  }
}
