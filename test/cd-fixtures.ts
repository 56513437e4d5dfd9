// Shared by the Custom Diffusion tests: random concepts for the tiny SD1
// UNet (randn deltas on its attn2 matrices, randn token rows), and a tiny
// tokenizer folder whose vocabulary matches the tiny text encoder's 1000 rows.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { randn, type Tensor } from '../lib/index.js';
import type { ConceptWeights, CustomDiffusionMode } from '../lib/custom-diffusion/types.js';
import { byteToChar } from '../lib/tokenizer/bytes.js';

const KV = /\.attn2\.to_(k|v)\.weight$/;
const CROSS = /\.attn2\.to_(q|k|v|out\.0)\.weight$/;

export interface RandomConceptOptions {
  mode?: CustomDiffusionMode;
  tokens?: Array<[token: string, classWord: string]>;
  hidden?: number;
  seed?: number;
  /** std of the deltas; default 0.05. */
  scale?: number;
  fingerprint?: string;
  /** Only the first n trained matrices (default all). */
  limit?: number;
}

export async function randomConcept(unetWeights: Map<string, Tensor>, o: RandomConceptOptions = {}): Promise<ConceptWeights> {
  const mode = o.mode ?? 'kv';
  const seed = o.seed ?? 1;
  const names = [...unetWeights.keys()].filter((n) => (mode === 'kv' ? KV : CROSS).test(n)).sort().slice(0, o.limit);
  const deltas = new Map<string, Tensor<'f32'>>();
  for (const [i, n] of names.entries()) deltas.set(n, await randn(unetWeights.get(n)!.shape, { seed: seed * 1000 + i, std: o.scale ?? 0.05 }));
  const tokens = [];
  for (const [i, [token, classWord]] of (o.tokens ?? [['<new1>', 'dog']]).entries()) {
    tokens.push({ token, classWord, embedding: await randn([o.hidden ?? 32], { seed: seed * 1000 + 900 + i, std: 0.5 }) });
  }
  return { method: 'custom-diffusion', mode, tokens, deltas, baseFingerprint: o.fingerprint ?? 'sha256:test', };
}

export function disposeAll(concept: ConceptWeights): void {
  for (const d of concept.deltas.values()) if (!d.disposed) d.dispose();
  for (const tk of concept.tokens) if (!tk.embedding.disposed) tk.embedding.dispose();
}

/**
 * A CLIP-style tokenizer folder of exactly `size` ids: the 512 byte symbols
 * (plain and word-final), filler merges' results, then the start and end
 * tokens, so words tokenize letter by letter and ids stay below `size`.
 */
export async function writeTinyTokenizer(dir: string, size = 1000): Promise<void> {
  await mkdir(dir, { recursive: true });
  const vocab: Record<string, number> = {};
  let id = 0;
  for (const c of byteToChar) vocab[c] = id++;
  for (const c of byteToChar) vocab[`${c}</w>`] = id++;
  const merges: string[] = [];
  // Filler entries made by merges of two symbols that prompts here never contain.
  const rare = byteToChar.slice(200, 256);
  for (let i = 0; id < size - 2; i++) {
    const a = rare[Math.floor(i / rare.length) % rare.length];
    const b = rare[i % rare.length];
    if (vocab[a + b] !== undefined) continue;
    vocab[a + b] = id++;
    merges.push(`${a} ${b}`);
  }
  vocab['<|startoftext|>'] = id++;
  vocab['<|endoftext|>'] = id++;
  await writeFile(join(dir, 'vocab.json'), JSON.stringify(vocab));
  await writeFile(join(dir, 'merges.txt'), `#version: 0.2\n${merges.join('\n')}\n`);
}
