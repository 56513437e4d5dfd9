// Growing a token-embedding table for added tokens (textual inversion,
// Custom Diffusion's <new1>): the old rows unchanged, then one row per new
// token copied from a chosen row, or the mean of all rows as transformers'
// resize_token_embeddings(mean_resizing) starts them. Done with tensor ops,
// so the table stays on its device and in its dtype.
import { invalidArgument } from '../errors.js';
import { tensor } from '../creation.js';
import { sum } from '../ops.js';
import { concat } from '../nn/concat.js';
import { embedding } from '../nn/embedding.js';
import { combine } from '../schedulers/combine.js';
import type { Tensor } from '../tensor.js';
import { describe, type FloatDType } from '../validate.js';

/**
 * [V + n, H] from `table` [V, H]: row V + i is row `sources[i]` of the table,
 * or the mean of its V rows when `sources[i]` is undefined. A new tensor.
 */
export async function growEmbedding<D extends FloatDType>(fn: string, table: Tensor<D>, sources: ReadonlyArray<number | undefined>): Promise<Tensor<D>> {
  const [V] = table.shape;
  sources.forEach((s, i) => {
    if (s !== undefined && (typeof s !== 'number' || !Number.isSafeInteger(s) || s < 0 || s >= V)) {
      throw invalidArgument(`${fn}: source row ${i} must be a token id in [0, ${V}) or undefined (the mean row), got ${describe(s)}`);
    }
  });
  const owned: Tensor[] = [];
  try {
    // Gathered in f32 (the CPU embedding kernel's dtype; f16/bf16 → f32 → back is exact), and
    // summed in f32, as 49 408 half-precision rows would lose the mean's low bits.
    const wide = (table.dtype === 'f32' ? table : await table.cast('f32')) as Tensor<'f32'>;
    if (wide !== (table as Tensor)) owned.push(wide);
    // The mean row goes after the table as id V, so one gather picks every new row.
    let source = wide;
    if (sources.some((s) => s === undefined)) {
      const total = await sum(wide, { dim: 0, keepDim: true });
      owned.push(total);
      const mean = await combine([[1 / V, total as Tensor<'f32'>]]);
      owned.push(mean);
      source = await concat([wide, mean]);
      owned.push(source);
    }
    let ids: Tensor<'i32'> = tensor(Int32Array.from(sources, (s) => s ?? V));
    owned.push(ids);
    if (table.device !== 'cpu') {
      ids = await ids.to(table.device);
      owned.push(ids);
    }
    const rows32 = await embedding(ids, source);
    owned.push(rows32);
    const rows = (table.dtype === 'f32' ? rows32 : await rows32.cast(table.dtype)) as Tensor<D>;
    if (rows !== (rows32 as Tensor)) owned.push(rows);
    return await concat([table, rows]);
  } finally {
    for (const t of owned) t.dispose();
  }
}
