// Adding concept tokens: the tokenizer learns them and the text encoder's
// token embedding grows by one row each (copied from an initializer token,
// from given ids, or the mean of all rows), the old rows untouched. Uses the
// tiny SD1 text encoder with its 1000 rows tiled to CLIP's 49 408 ids.
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { memoryStats, schedulers, tensor, type Tensor } from '../lib/index.js';
import { ClipTextEncoder } from '../lib/models/clip-text.js';
import { growEmbedding } from '../lib/models/grow-embedding.js';
import { TOKEN_EMBEDDING } from '../lib/models/layout-clip.js';
import { StableDiffusionPipeline, type PromptTokenizer } from '../lib/pipeline/txt2img.js';
import { ClipTokenizer } from '../lib/tokenizer/clip.js';
import { assertClose, assertRejects, settleGarbage } from './helpers.js';
import { REFERENCE, tinyModelLoader } from './tiny-models.js';

const t = suite('models.added-tokens');
const model = tinyModelLoader<{ hidden_size: number; [field: string]: unknown }>('text_encoder');
const gzPath = join(REFERENCE, 'clip/bpe_simple_vocab_16e6.txt.gz');
const VOCAB = 49408;
const DOG = 1929; // 'dog</w>'
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;

/** A fresh tokenizer and a CLIP-sized encoder (rows tiled from the tiny model), plus what the caller must dispose. */
async function parts() {
  const m = await model('sd1-tiny');
  const H = m.config.hidden_size;
  const small = f32(m.weights.get(TOKEN_EMBEDDING)!);
  const big = new Float32Array(VOCAB * H);
  for (let r = 0; r < VOCAB; r++) big.set(small.subarray((r % 1000) * H, (r % 1000 + 1) * H), r * H);
  const table = tensor(big, { shape: [VOCAB, H] });
  const weights = new Map(m.weights);
  weights.set(TOKEN_EMBEDDING, table);
  const textEncoder = ClipTextEncoder.fromWeights({ ...m.config, vocab_size: VOCAB }, weights);
  return { tokenizer: await ClipTokenizer.fromBpeGz(gzPath), textEncoder, table, big, H };
}

function pipeline(tokenizer: PromptTokenizer, textEncoder: ClipTextEncoder) {
  return StableDiffusionPipeline.fromComponents({
    tokenizer,
    textEncoder,
    unet: { config: { inChannels: 4, blockOutChannels: [8] }, forward: async (x: Tensor) => x },
    vae: { factor: 8, scalingFactor: 1, decode: async (z: Tensor) => z },
    scheduler: schedulers.DDIMScheduler.fromConfig({}),
  });
}

async function encodeText(pipe: StableDiffusionPipeline, text: string): Promise<Float32Array> {
  const { ids } = pipe.tokenizer.encodePadded(text);
  const out = await pipe.textEncoder.encode([Array.from(ids)]);
  const data = f32(out.lastHiddenState);
  out.lastHiddenState.dispose();
  return data;
}

t("'<new1>' initialized from 'dog': new id 49408, its row is dog's, 'a <new1>' encodes exactly as 'a dog'", async () => {
  const p = await parts();
  const pipe = pipeline(p.tokenizer, p.textEncoder);
  const before = await encodeText(pipe, 'a <new1>');
  const ids = await pipe.addTokens(['<new1>'], { initializer: 'dog' });
  assert.equal(ids, [VOCAB]);
  assert.is(p.tokenizer.vocabSize, VOCAB + 1);
  assert.is((pipe.textEncoder as ClipTextEncoder).config.vocabSize, VOCAB + 1);
  assert.equal(p.tokenizer.encode('a <new1>'), [49406, 320, VOCAB, 49407]);
  const grown = (pipe.textEncoder as ClipTextEncoder).tokenEmbedding;
  assert.equal(grown.shape, [VOCAB + 1, p.H]);
  const rows = f32(grown);
  assert.equal(Array.from(rows.subarray(0, VOCAB * p.H)), Array.from(p.big), 'old rows unchanged');
  assert.equal(Array.from(rows.subarray(VOCAB * p.H)), Array.from(p.big.subarray(DOG * p.H, (DOG + 1) * p.H)), "the new row is dog's");
  const withNew = await encodeText(pipe, 'a <new1>');
  const withDog = await encodeText(pipe, 'a dog');
  assert.equal(Array.from(withNew), Array.from(withDog), 'same hidden states');
  assert.not.equal(Array.from(withNew), Array.from(before), 'before adding, <new1> was other tokens');
  // The caller's encoder and table are left as they were.
  assert.is(p.textEncoder.config.vocabSize, VOCAB);
  assert.ok(!p.table.disposed);
  pipe.dispose();
  assert.ok(grown.disposed, 'dispose() frees the grown table');
  p.table.dispose();
});

t('no initializer: mean of all rows; token-id initializers; ids continue across calls', async () => {
  const p = await parts();
  const pipe = pipeline(p.tokenizer, p.textEncoder);
  assert.equal(await pipe.addTokens(['<a>', '<b>']), [VOCAB, VOCAB + 1]);
  const first = (pipe.textEncoder as ClipTextEncoder).tokenEmbedding;
  const mean = new Float64Array(p.H);
  for (let r = 0; r < VOCAB; r++) for (let h = 0; h < p.H; h++) mean[h] += p.big[r * p.H + h] / VOCAB;
  const rows = f32(first);
  assertClose(rows.subarray(VOCAB * p.H, (VOCAB + 1) * p.H), mean, 1e-5, 1e-6, '<a> = mean row');
  assertClose(rows.subarray((VOCAB + 1) * p.H), mean, 1e-5, 1e-6, '<b> = mean row');
  assert.equal(await pipe.addTokens(['<c>', '<d>'], { initializer: [320, VOCAB] }), [VOCAB + 2, VOCAB + 3]);
  assert.ok(first.disposed, 'the pipeline frees its own earlier table');
  const again = f32((pipe.textEncoder as ClipTextEncoder).tokenEmbedding);
  assert.equal(Array.from(again.subarray(0, (VOCAB + 2) * p.H)), Array.from(rows), 'earlier rows unchanged');
  assert.equal(Array.from(again.subarray((VOCAB + 2) * p.H, (VOCAB + 3) * p.H)), Array.from(p.big.subarray(320 * p.H, 321 * p.H)), "<c> = 'a</w>' row");
  assert.equal(Array.from(again.subarray((VOCAB + 3) * p.H)), Array.from(rows.subarray(VOCAB * p.H, (VOCAB + 1) * p.H)), '<d> = <a> row');
  // '<c>' initializes from an added token too.
  await pipe.addTokens(['<e>'], { initializer: '<c>' });
  assert.equal(Array.from(f32((pipe.textEncoder as ClipTextEncoder).tokenEmbedding).subarray((VOCAB + 4) * p.H)), Array.from(p.big.subarray(320 * p.H, 321 * p.H)));
  pipe.dispose();
  p.table.dispose();
});

t('growEmbedding keeps the dtype: an f16 table gets its mean row in f16', async () => {
  const table = tensor(Float32Array.from([1, 2, 3, 4, 5, 7, -1, 0.5]), { shape: [4, 2] });
  const half = await table.cast('f16');
  const grown = await growEmbedding('test', half, [undefined, 2]);
  assert.is(grown.dtype, 'f16');
  assert.equal(grown.shape, [6, 2]);
  assert.equal(Array.from(grown.dataSync() as Float32Array), [1, 2, 3, 4, 5, 7, -1, 0.5, 2, 3.375, 5, 7]);
  for (const x of [table, half, grown]) x.dispose();
});

t('bad input: existing tokens, multi-token initializers, wrong ids, unusable parts; nothing changes and nothing leaks', async () => {
  const p = await parts();
  const pipe = pipeline(p.tokenizer, p.textEncoder);
  await pipe.addTokens(['<new1>'], { initializer: 'dog' });
  await settleGarbage();
  const live = memoryStats('cpu').liveAllocations;
  const enc = pipe.textEncoder;
  const cases: Array<[() => Promise<unknown>, RegExp]> = [
    [() => pipe.addTokens(['<new1>']), /addTokens: token '<new1>' is already in the vocabulary \(id 49408\)/],
    [() => pipe.addTokens(['dog</w>']), /token 'dog<\/w>' is already in the vocabulary \(id 1929\)/],
    [() => pipe.addTokens(['<x>'], { initializer: 'a photo' }), /initializer 'a photo' must be a single token, but it tokenizes to 2 tokens \('a<\/w>', 'photo<\/w>'\)/],
    [() => pipe.addTokens(['<x>'], { initializer: 'hippopotamus' }), /initializer 'hippopotamus' must be a single token, but it tokenizes to \d+ tokens/],
    [() => pipe.addTokens(['<x>'], { initializer: '' }), /initializer '' must be a single token, but it tokenizes to 0 tokens$/],
    [() => pipe.addTokens(['<x>'], { initializer: [VOCAB + 1] }), /initializer\[0\] must be a token id in \[0, 49409\), got number 49409/],
    [() => pipe.addTokens(['<x>'], { initializer: [1.5] }), /initializer\[0\] must be a token id/],
    [() => pipe.addTokens(['<x>', '<y>'], { initializer: [1] }), /initializer must hold one token id per new token \(2\), got 1/],
    [() => pipe.addTokens(['<x>'], { initializer: 5 as never }), /initializer must be a string \(one token\) or an array of token ids, got number 5/],
    [() => pipe.addTokens(['<x>'], { init: 'dog' } as never), /unknown option 'init'/],
    [() => pipe.addTokens([]), /tokens must be a non-empty array of strings, got an array/],
    [() => pipe.addTokens('<x>' as never), /tokens must be a non-empty array of strings, got '<x>'/],
    [() => pipe.addTokens([7] as never), /tokens\[0\] must be a string, got number 7/],
    // Refused by the tokenizer after the table grew: the new table is freed.
    [() => pipe.addTokens(['<x>', ' ']), /tokens\[1\] must be a non-blank string/],
    [() => pipe.addTokens(['<x>', '<x>']), /token '<x>' is already in the vocabulary/],
  ];
  for (const [fn, pattern] of cases) await assertRejects(fn, 'INVALID_ARGUMENT', pattern);
  assert.is(p.tokenizer.vocabSize, VOCAB + 1);
  assert.is(pipe.textEncoder, enc);
  assert.is(memoryStats('cpu').liveAllocations, live, 'failed calls leave no tensors behind');

  // Parts that cannot grow.
  const folded: PromptTokenizer = { encodePadded: (text, o) => p.tokenizer.encodePadded(text, o) };
  await assertRejects(() => pipeline(folded, p.textEncoder).addTokens(['<z>']), 'INVALID_ARGUMENT', /the pipeline's tokenizer must be a ClipTokenizer/);
  const m = await model('sd1-tiny');
  const tiny = ClipTextEncoder.fromWeights(m.config, m.weights);
  const fresh = await ClipTokenizer.fromBpeGz(gzPath);
  await assertRejects(() => pipeline(fresh, tiny).addTokens(['<z>']), 'INVALID_ARGUMENT', /the tokenizer has 49408 tokens but the text encoder's vocab_size is 1000/);
  const fake = { config: { maxPositionEmbeddings: 77 }, encode: async () => ({ lastHiddenState: p.table }) };
  const fakePipe = StableDiffusionPipeline.fromComponents({ tokenizer: p.tokenizer, textEncoder: fake, unet: { config: { inChannels: 4, blockOutChannels: [8] }, forward: async (x: Tensor) => x }, vae: { factor: 8, scalingFactor: 1, decode: async (z: Tensor) => z }, scheduler: schedulers.DDIMScheduler.fromConfig({}) });
  await assertRejects(() => fakePipe.addTokens(['<z>']), 'INVALID_ARGUMENT', /text encoder must be a ClipTextEncoder/);

  // The encoder method itself.
  await assertRejects(() => p.textEncoder.addTokenRows([]), 'INVALID_ARGUMENT', /addTokenRows: sources must be a non-empty array/);
  await assertRejects(() => p.textEncoder.addTokenRows([VOCAB]), 'INVALID_ARGUMENT', /source row 0 must be a token id in \[0, 49408\) or undefined \(the mean row\), got number 49408/);
  await assertRejects(() => p.textEncoder.addTokenRows(['3'] as never), 'INVALID_ARGUMENT', /source row 0 must be a token id/);
  pipe.dispose();
  p.table.dispose();
});

t.run();
