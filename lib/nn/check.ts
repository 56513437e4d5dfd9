// Argument checks the nn wrappers share (embedding, concat, loss, adamw,
// clip-grad-norm): each names the function and the argument, and throws
// INVALID_ARGUMENT.
import { invalidArgument } from '../errors.js';
import { Tensor } from '../tensor.js';
import { describe } from '../validate.js';

export function checkInteger(fn: string, name: string, value: unknown, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw invalidArgument(`${fn}: ${name} must be an integer, got ${describe(value)}`);
  }
  return value;
}

export function checkTensor(fn: string, name: string, value: unknown): Tensor | undefined {
  if (value === undefined || value === null) return undefined;
  if (!(value instanceof Tensor)) throw invalidArgument(`${fn}: ${name} must be a Tensor, got ${describe(value)}`);
  return value;
}

export function checkTensorList(fn: string, name: string, value: unknown): Tensor[] {
  if (!Array.isArray(value)) throw invalidArgument(`${fn}: ${name} must be an array of Tensors, got ${describe(value)}`);
  value.forEach((t, i) => {
    if (!(t instanceof Tensor)) throw invalidArgument(`${fn}: ${name}[${i}] must be a Tensor, got ${describe(t)}`);
  });
  return value as Tensor[];
}
