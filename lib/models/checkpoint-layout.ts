// Checking a checkpoint's tensor shapes (a safetensors header) against the
// layout a model config expects: what is missing, unexpected or mis-shaped,
// and the error that lists it all.
import { invalidArgument } from '../errors.js';
import { checkOptions, describe, isPlainObject } from '../validate.js';
import type { Layout } from './configs.js';

/** Anything with tensor shapes by name: a SafetensorsHeader or its `tensors` record. */
export type HeaderLike = { tensors: Record<string, { shape: readonly number[] }> } | Record<string, { shape: readonly number[] }>;

export interface LayoutDiff {
  missing: string[];
  unexpected: string[];
  misshaped: { name: string; expected: number[]; found: number[] }[];
}

export interface CheckOptions {
  /** Named in the error message (the checkpoint file or folder). */
  file?: string;
  /** Names that may be present without being in the layout (buffers such as position_ids). */
  ignore?: readonly string[];
}

const LIST_LIMIT = 10;

function shapesOf(fn: string, header: unknown): Map<string, readonly number[]> {
  if (!isPlainObject(header)) throw invalidArgument(`${fn}: header must be an object of name → { shape }, got ${describe(header)}`);
  // A wrapper's `tensors` holds entries; a tensor that happens to be named 'tensors' has a shape.
  const entries = isPlainObject(header.tensors) && !Array.isArray(header.tensors.shape) ? header.tensors : header;
  const out = new Map<string, readonly number[]>();
  for (const [name, info] of Object.entries(entries)) {
    const shape = isPlainObject(info) ? info.shape : undefined;
    if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
      throw invalidArgument(`${fn}: entry '${name}' has no valid shape (got ${describe(shape)})`);
    }
    out.set(name, shape as number[]);
  }
  return out;
}

function checkIgnore(fn: string, ignore: unknown): readonly string[] {
  if (ignore === undefined) return [];
  if (!Array.isArray(ignore) || ignore.some((n) => typeof n !== 'string')) throw invalidArgument(`${fn}: ignore must be an array of tensor names, got ${describe(ignore)}`);
  return ignore as string[];
}

/** What differs between a checkpoint header and a layout (empty lists: they match). */
export function diffAgainstLayout(header: HeaderLike, layout: Layout, options?: { ignore?: readonly string[] }): LayoutDiff {
  const fn = 'diffAgainstLayout';
  const found = shapesOf(fn, header);
  if (!isPlainObject(layout)) throw invalidArgument(`${fn}: layout must be an object of name → shape, got ${describe(layout)}`);
  const ignore = new Set(checkIgnore(fn, options?.ignore));
  const diff: LayoutDiff = { missing: [], unexpected: [], misshaped: [] };
  for (const [name, expected] of Object.entries(layout)) {
    if (!Array.isArray(expected)) throw invalidArgument(`${fn}: layout entry '${name}' must be a shape array, got ${describe(expected)}`);
    const shape = found.get(name);
    if (shape === undefined) diff.missing.push(name);
    else if (shape.length !== expected.length || shape.some((d, i) => d !== expected[i])) diff.misshaped.push({ name, expected: [...expected], found: [...shape] });
  }
  for (const name of found.keys()) {
    if (!Object.hasOwn(layout, name) && !ignore.has(name)) diff.unexpected.push(name);
  }
  return diff;
}

export function listing(items: string[]): string {
  const shown = items.slice(0, LIST_LIMIT).join('\n    ');
  return items.length > LIST_LIMIT ? `${shown}\n    … and ${items.length - LIST_LIMIT} more` : shown;
}

/**
 * Throws INVALID_ARGUMENT listing every missing, unexpected and mis-shaped
 * tensor (lists truncated with counts) unless the header matches the layout.
 */
export function checkAgainstLayout(header: HeaderLike, layout: Layout, options?: CheckOptions): void {
  const o = checkOptions('checkAgainstLayout', options, ['file', 'ignore']);
  if (o.file !== undefined && typeof o.file !== 'string') throw invalidArgument(`checkAgainstLayout: file must be a string, got ${describe(o.file)}`);
  const file = o.file ?? 'checkpoint';
  const d = diffAgainstLayout(header, layout, { ignore: o.ignore as string[] | undefined });
  if (d.missing.length + d.unexpected.length + d.misshaped.length === 0) return;
  const parts: string[] = [];
  if (d.missing.length) parts.push(`  missing (${d.missing.length}):\n    ${listing(d.missing)}`);
  if (d.misshaped.length) {
    const lines = d.misshaped.map((m) => `${m.name}: expected [${m.expected.join(', ')}], found [${m.found.join(', ')}]`);
    parts.push(`  wrong shape (${d.misshaped.length}):\n    ${listing(lines)}`);
  }
  if (d.unexpected.length) parts.push(`  unexpected (${d.unexpected.length}):\n    ${listing(d.unexpected)}`);
  const total = Object.keys(layout).length;
  throw invalidArgument(`${file} does not match the expected layout (${total} tensors): ${d.missing.length} missing, ${d.misshaped.length} with a wrong shape, ${d.unexpected.length} unexpected\n${parts.join('\n')}`);
}
