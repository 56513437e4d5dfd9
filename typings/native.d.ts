// The native addon's surface (csrc/napi/addon.cc), declared by hand.
// Applications use the wrapped API in lib/ (package entry point), not this.

export type NativeDType = 'f32' | 'f16' | 'bf16' | 'i32' | 'i64' | 'u8';

export declare class TensorHandle {
  readonly shape: number[];
  readonly dtype: NativeDType;
  readonly device: string;
  readonly nbytes: number;
  readonly disposed: boolean;
  dispose(): void;
  /** A copy of the data, converted to `as` when given. CPU tensors only. */
  dataSync(as?: NativeDType): ArrayBuffer;
}

export interface NativeBuildInfo {
  blas: string;
  cuda: boolean;
  cudaRuntimeVersion: number;
  napiVersion: number;
}

export interface NativeCudaDevice {
  index: number;
  device: string;
  name: string;
  totalMemory: number;
  freeMemory: number;
  computeCapability: string;
  multiprocessors: number;
}

export interface NativeDevices {
  cpu: {
    cores: number;
    threads: number;
    /** The instruction set Imprint's own CPU kernels use ("avx512", "avx2", "avx", "sse4.2", "sse2"; "neon" on ARM): the CPU's best, or less under IMPRINT_CPU_ISA. */
    simd: string;
    /** The best the CPU supports. */
    simdDetected: string;
    totalMemory: number;
  };
  cuda: {
    built: boolean;
    available: boolean;
    reason?: string;
    runtimeVersion: number;
    driverVersion: number;
    /** Where a GPU is usable: the GEMM library in use ("cuBLAS 13.1", opened at run time, or "imprint tensor-core"). */
    gemmLibrary?: string;
    devices: NativeCudaDevice[];
  };
}

export interface NativeMemoryStats {
  device: string;
  liveBytes: number;
  peakBytes: number;
  liveAllocations: number;
  totalAllocations: number;
  limitBytes: number;
  /** Freed blocks kept for reuse (not counted in liveBytes). */
  cachedBytes: number;
  deviceFreeBytes: number;
  deviceTotalBytes: number;
}

type U64 = number | bigint;

export interface NativeSafetensorsEntry {
  name: string;
  dtype: string;
  shape: number[];
  offsets: [number, number];
}

export interface NativeSafetensorsHeader {
  tensors: NativeSafetensorsEntry[];
  metadata: [string, string][];
}

export interface NativeAddon {
  TensorHandle: typeof TensorHandle;
  /** Native errors are constructed as `new ErrorClass(message, code)`. */
  setErrorClass(ctor: new (message: string, code: never) => Error): void;
  buildInfo(): NativeBuildInfo;
  devices(): NativeDevices;
  memoryStats(device: string): NativeMemoryStats;
  resetPeakMemory(device: string): void;
  emptyCache(device: string): void;
  setMemoryLimit(device: string, bytes: U64): void;
  numThreads(): number;
  setNumThreads(n: number): void;
  /** A CPU tensor of `dtype` from data of `srcDtype` (converted when they differ). */
  fromBuffer(data: ArrayBufferView, shape: number[], srcDtype: NativeDType, dtype?: NativeDType): TensorHandle;
  /** The same data under another shape (shares memory; synchronous). */
  reshape(a: TensorHandle, shape: number[]): TensorHandle;
  matmul(a: TensorHandle, b: TensorHandle, transposeA: boolean, transposeB: boolean): Promise<TensorHandle>;
  add(a: TensorHandle, b: TensorHandle): Promise<TensorHandle>;
  mul(a: TensorHandle, b: TensorHandle): Promise<TensorHandle>;
  sum(a: TensorHandle, dims: number[], keepDims: boolean): Promise<TensorHandle>;
  cast(a: TensorHandle, dtype: NativeDType): Promise<TensorHandle>;
  to(a: TensorHandle, device: string): Promise<TensorHandle>;
  rand(shape: number[], dtype: NativeDType, device: string, seed: U64, offset: U64, low: number, high: number): Promise<TensorHandle>;
  randn(shape: number[], dtype: NativeDType, device: string, seed: U64, offset: U64, mean: number, std: number): Promise<TensorHandle>;
  full(shape: number[], dtype: NativeDType, device: string, value: number): Promise<TensorHandle>;
  /**
   * The neural-network op library (csrc/ops): runs op `name` on `inputs` (null
   * for an omitted optional input) with named attributes; resolves to its outputs.
   */
  nnOp(name: string, inputs: (TensorHandle | null)[], attrs?: Record<string, number | boolean | number[] | undefined>): Promise<TensorHandle[]>;
  /** Names of the registered nnOp ops. */
  nnOpNames(): string[];
  /** Validates a .safetensors file and returns its entries sorted by name. */
  safetensorsHeader(path: string): NativeSafetensorsHeader;
  /** Loads tensors (all, sorted by name, when names is null); dtype null keeps each file dtype's natural one. */
  safetensorsLoad(path: string, names: string[] | null, dtype: NativeDType | null): Promise<TensorHandle[]>;
  /** Writes CPU tensors atomically (temp file, fsync, rename). */
  safetensorsSave(path: string, names: string[], tensors: TensorHandle[], metadata: [string, string][]): Promise<unknown>;
  /** Test hook: one raw Philox4x32-10 block for a 4-word counter and 2-word key. */
  philoxBlock(counter: number[], key: number[]): number[];
  /**
   * LAPACK from the linked OpenBLAS (csrc/napi/linalg_napi.cc) on row-major
   * float64 arrays, synchronous. lapack is false where the build has none or
   * IMPRINT_BLAS=none turned it off (the other entries then throw).
   */
  linalgInfo(): { lapack: boolean; name: string };
  /** Eigenvalues (descending) and eigenvectors (row i for value i) of a symmetric [n, n] matrix (dsyevd). */
  linalgSymmetricEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array };
  /** Thin SVD of [rows, cols] (dgesdd): s descending, u [rows, k], vt [k, cols], k = min(rows, cols). */
  linalgSvd(a: Float64Array, rows: number, cols: number): { s: Float64Array; u: Float64Array; vt: Float64Array };
  /** x with a·x = b for [n, n] a and [n, nrhs] b (LU, dgetrf/dgetrs); x null and the first step whose pivot is at most pivotTolerance·max|a| when a is singular. */
  linalgSolve(a: Float64Array, n: number, b: Float64Array, nrhs: number, pivotTolerance: number): { x: Float64Array | null; singularPivot: number };
}
