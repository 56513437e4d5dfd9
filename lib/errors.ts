// ImprintError: the one error class every failure of the package becomes.
// `code` is stable and meant for programs; `message` is for people and names
// the op, the shapes, dtypes and device involved.

export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'SHAPE_MISMATCH'
  | 'DTYPE_MISMATCH'
  | 'DEVICE_MISMATCH'
  | 'DISPOSED'
  | 'OUT_OF_MEMORY'
  | 'CUDA_NOT_BUILT'
  | 'CUDA_UNAVAILABLE'
  | 'CUDA_ERROR'
  | 'UNSUPPORTED'
  | 'NATIVE_LOAD_FAILED'
  | 'INTERNAL';

export class ImprintError extends Error {
  readonly code: ErrorCode;

  constructor(message: string, code: ErrorCode) {
    super(message);
    this.name = 'ImprintError';
    this.code = code;
  }

  // Two copies of the package in one process (two versions, or the built and
  // the source tree) share the native addon, which raises the class the last
  // copy registered: an ImprintError of any copy counts as one.
  static [Symbol.hasInstance](value: unknown): boolean {
    return value instanceof Error && value.name === 'ImprintError' && typeof (value as { code?: unknown }).code === 'string';
  }
}

export function invalidArgument(message: string): ImprintError {
  return new ImprintError(message, 'INVALID_ARGUMENT');
}
