// Several Cones subjects (lib/methods/cones/combine.ts) on the tiny SD1 model:
// the union of neuron sets (sorted, overlaps counted as applyConcepts counts
// them), a united file that applies exactly as its parts applied together,
// and the fine-tuning on multi-subject prompts: reproducible from its seed,
// LoRA factors on every cross-attention K/V that apply as the adapters the
// training ran with, an attention term that falls when it dominates; plus
// bad options and `imprint merge` on Cones files.
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { applyConcepts, unetWeightMap } from '../lib/concepts/apply.js';
import { disposeConcept, loadConcept, saveConcept } from '../lib/concepts/concept-file.js';
import type { ConesConcept } from '../lib/concepts/types.js';
import { CONCEPT_COMMANDS } from '../lib/cli/commands-concepts.js';
import { randn, tensor } from '../lib/creation.js';
import { combineSubjects, uniteNeurons, type CombineSubjectsOptions } from '../lib/methods/cones/combine.js';
import { findNeurons } from '../lib/methods/cones/find.js';
import { UNet2DConditionModel, type UNetAdapter } from '../lib/models/unet.js';
import { exciteMaps, promptFocus } from '../lib/pipeline/excite.js';
import { StableDiffusionPipeline } from '../lib/pipeline/txt2img.js';
import type { Tensor } from '../lib/tensor.js';
import { conceptFolder, removeTempFolders, tempFolder, tinyModelFolder } from './cd-fixture.js';
import { assertRejects } from './helpers.js';

const t = suite('cones.combine');
t.after(removeTempFolders);
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;
const PROMPT = 'photo of a dog and a cat';

type Fixture = { model: string; dogImages: string; catImages: string; dog: ConesConcept; cat: ConesConcept };
let fixture: Fixture | undefined;
async function setup(): Promise<Fixture> {
  if (fixture) return fixture;
  const model = await tinyModelFolder();
  const dogImages = await conceptFolder(2, [220, 20, 20]);
  const catImages = await conceptFolder(2, [20, 20, 220]);
  const find = async (images: string, classWord: string) => (await findNeurons({
    model, images, classWord, numRegImages: 1, regSteps: 1, resolution: 16, passes: 3, rho: 0.05, topFraction: 0.05, seed: 2, quiet: true,
  })).concept;
  fixture = { model, dogImages, catImages, dog: await find(dogImages, 'dog'), cat: await find(catImages, 'cat') };
  return fixture;
}

function tuneOptions(f: Fixture, extra: Partial<CombineSubjectsOptions> = {}): CombineSubjectsOptions {
  return {
    model: f.model, concepts: [f.dog, f.cat], prompts: [PROMPT], excite: ['dog', 'cat'], images: [f.dogImages, f.catImages],
    steps: 3, lr: 1e-2, resolution: 16, seed: 4, quiet: true, ...extra,
  };
}

const neuronsOf = (c: ConesConcept) => [...c.neurons].map(([n, i]) => [n, [...i]]).sort();

t('uniteNeurons: the sorted union per weight; an entry shut by two concepts counts once, as an overlap', () => {
  const c = (sets: Record<string, number[]>): ConesConcept => ({ method: 'cones', tokens: [], baseFingerprint: 'x', neurons: new Map(Object.entries(sets).map(([n, i]) => [n, Int32Array.from(i)])) });
  const r = uniteNeurons([c({ a: [1, 5, 9], b: [0] }), c({ a: [2, 5], c: [7] }), c({ a: [9, 11] })]);
  assert.equal([...r.neurons].map(([n, i]) => [n, [...i]]), [['a', [1, 2, 5, 9, 11]], ['b', [0]], ['c', [7]]]);
  assert.equal(r.shut, { a: { count: 5, overlap: 2 }, b: { count: 1, overlap: 0 }, c: { count: 1, overlap: 0 } });
});

t('the union alone: a file of indices that applies exactly as its parts applied together', async () => {
  const f = await setup();
  const r = await combineSubjects({ model: f.model, concepts: [f.dog, f.cat] });
  assert.equal(neuronsOf(r.concept), neuronsOf({ ...f.dog, neurons: uniteNeurons([f.dog, f.cat]).neurons }));
  assert.is(r.concept.lora, undefined);
  assert.equal(r.losses, []);
  const dir = await tempFolder('imprint-cones-combine-');
  await saveConcept(join(dir, 'both.safetensors'), r.concept);
  const back = await loadConcept(join(dir, 'both.safetensors'), { method: 'cones' });
  const pipe = await StableDiffusionPipeline.fromPretrained(f.model);
  try {
    const together = await applyConcepts(pipe, [f.dog, f.cat]);
    assert.equal(together.shut, r.shut, 'the overlaps applyConcepts reports');
    const want = new Map([...unetWeightMap(pipe.unet as UNet2DConditionModel)].map(([n, w]) => [n, Float32Array.from(f32(w))]));
    await together.restore();
    const united = await applyConcepts(pipe, [back]);
    for (const [n, w] of unetWeightMap(pipe.unet as UNet2DConditionModel)) assert.equal(f32(w), want.get(n)!, n);
    await united.restore();
  } finally {
    pipe.dispose();
  }
});

t('fine-tuning: reproducible, LoRA factors on every cross-attention K/V that apply as the training adapters', async () => {
  const f = await setup();
  const seen: number[] = [];
  const a = await combineSubjects(tuneOptions(f, { onProgress: (i) => seen.push(i.step) }));
  const b = await combineSubjects(tuneOptions(f));
  assert.equal(seen, [1, 2, 3]);
  assert.is(a.losses.length, 3);
  assert.ok(a.losses.every((l) => Number.isFinite(l.diffusion) && l.attention >= 0 && l.attention <= 1), JSON.stringify(a.losses));
  assert.equal(a.losses, b.losses, 'the same losses from the same seed');
  const pipe = await StableDiffusionPipeline.fromPretrained(f.model);
  try {
    const unet = pipe.unet as UNet2DConditionModel;
    const kv = unet.weightNames.filter((n) => /\.attn2\.to_[kv]\.weight$/.test(n));
    assert.equal([...a.concept.lora!.keys()], kv);
    let moved = 0;
    for (const [n, l] of a.concept.lora!) {
      const [out, inp] = unet.weights[unet.weightNames.indexOf(n)].shape;
      assert.equal([l.a.shape, l.b.shape], [[4, inp], [out, 4]], n);
      assert.equal(f32(l.a), f32(b.concept.lora!.get(n)!.a), `${n}: a reproducible`);
      assert.equal(f32(l.b), f32(b.concept.lora!.get(n)!.b), `${n}: b reproducible`);
      moved += f32(l.b).some((v) => v !== 0) ? 1 : 0;
    }
    assert.is(moved, kv.length, 'every up factor left zero');
    assert.equal(neuronsOf(a.concept), neuronsOf({ ...f.dog, neurons: uniteNeurons([f.dog, f.cat]).neurons }));
    // Applied (W + B·A summed in float64, then shut) = the adapters the training ran with ((W + B·A) ⊙ (1 − m) in f32).
    const adapters: UNetAdapter[] = [];
    for (const n of new Set([...a.concept.lora!.keys(), ...a.concept.neurons.keys()])) {
      const w = unet.weights[unet.weightNames.indexOf(n)];
      const idx = a.concept.neurons.get(n);
      const mask = idx ? new Uint8Array(w.numel) : undefined;
      idx?.forEach((k) => (mask![k] = 1));
      const l = a.concept.lora!.get(n);
      adapters.push({ weight: n, ...(l ? { lora: { a: l.a, b: l.b } } : {}), ...(mask ? { mask: tensor(mask, { shape: w.shape, dtype: 'u8' }) } : {}) });
    }
    const x = await randn([1, unet.config.inChannels, 8, 8], { seed: 9 });
    const ctx = await randn([1, pipe.textEncoder.config.maxPositionEmbeddings, unet.config.crossAttentionDim], { seed: 10 });
    const viaAdapters = f32(await unet.forward(x, 500, ctx, { adapters }));
    const applied = await applyConcepts(pipe, [a.concept]);
    const viaApply = f32(await (pipe.unet as UNet2DConditionModel).forward(x, 500, ctx));
    let max = 0, scale = 0;
    for (let i = 0; i < viaApply.length; i++) max = Math.max(max, Math.abs(viaApply[i] - viaAdapters[i])), scale = Math.max(scale, Math.abs(viaApply[i]));
    // The two differ by one f32 rounding of each effective weight, carried through the tiny UNet.
    assert.ok(max <= 1e-4 * scale, `applied vs adapters: max difference ${max} (outputs up to ${scale})`);
    await applied.restore();
  } finally {
    pipe.dispose();
    disposeConcept(a.concept), disposeConcept(b.concept);
  }
});

t('fine-tuning with the attention term dominant lowers that term at latents it never saw', async () => {
  const f = await setup();
  const r = await combineSubjects(tuneOptions(f, { steps: 8, lr: 3e-2, attentionWeight: 100 }));
  const pipe = await StableDiffusionPipeline.fromPretrained(f.model);
  try {
    const unet = pipe.unet as UNet2DConditionModel;
    const length = pipe.textEncoder.config.maxPositionEmbeddings;
    const focus = promptFocus('test', pipe.tokenizer, length, PROMPT, ['dog', 'cat']);
    const { lastHiddenState: embeds } = await pipe.textEncoder.encode([Array.from(pipe.tokenizer.encodePadded(PROMPT, { maxLength: length }).ids)]);
    const masks = (lora: boolean): UNetAdapter[] => [...new Set([...r.concept.lora!.keys(), ...r.concept.neurons.keys()])].map((n) => {
      const w = unet.weights[unet.weightNames.indexOf(n)];
      const mask = new Uint8Array(w.numel);
      r.concept.neurons.get(n)?.forEach((k) => (mask[k] = 1));
      const l = r.concept.lora!.get(n);
      return { weight: n, mask: tensor(mask, { shape: w.shape, dtype: 'u8' }), ...(lora && l ? { lora: { a: l.a, b: l.b } } : {}) };
    });
    const mean = async (adapters: UNetAdapter[]): Promise<number> => {
      let s = 0;
      for (let k = 0; k < 4; k++) {
        const x = await randn([1, unet.config.inChannels, 16, 16], { seed: 100 + k });
        const e = await exciteMaps({ unet, context: embeds, tokens: focus.tokens, subjects: focus.subjects }, x, 600 + 100 * k, { adapters });
        e.dFocus.dispose();
        s += e.loss[0] / 4;
      }
      return s;
    };
    const before = await mean(masks(false));
    const after = await mean(masks(true));
    assert.ok(after < before - 0.01, `attention loss at 4 unseen latents: ${before.toFixed(4)} with the union alone, ${after.toFixed(4)} fine-tuned`);
  } finally {
    pipe.dispose();
    disposeConcept(r.concept);
  }
});

t('bad options are named', async () => {
  const f = await setup();
  await assertRejects(() => combineSubjects({ model: f.model, concepts: [f.dog] }), 'INVALID_ARGUMENT', /at least two Cones concepts/);
  await assertRejects(() => combineSubjects({ model: f.model, concepts: [f.dog, { ...f.cat, method: 'custom-diffusion' } as never] }), 'INVALID_ARGUMENT', /concepts\[1\] must be a Cones concept/);
  await assertRejects(() => combineSubjects({ model: f.model, concepts: [f.dog, { ...f.cat, baseFingerprint: 'sha256:other' }] }), 'INVALID_ARGUMENT', /concepts\[1\] was found on base model sha256:other/);
  await assertRejects(() => combineSubjects({ model: f.model, concepts: [f.dog, f.cat], steps: 3 }), 'INVALID_ARGUMENT', /steps is for the fine-tuning, which needs prompts/);
  await assertRejects(() => combineSubjects(tuneOptions(f, { excite: ['dog', 'horse'] })), 'INVALID_ARGUMENT', /excite word 'horse' is not in the prompt/);
  await assertRejects(() => combineSubjects(tuneOptions(f, { images: [f.dogImages] })), 'INVALID_ARGUMENT', /images must give each of the 2 concepts/);
  await assertRejects(() => combineSubjects(tuneOptions(f, { concepts: [f.dog, { ...f.cat, settings: {} }] })), 'INVALID_ARGUMENT', /concepts\[1\] does not record the prompt/);
  await assertRejects(() => combineSubjects(tuneOptions(f, { lr: -1 })), 'INVALID_ARGUMENT', /lr must be/);
});

t('imprint merge on Cones files: unites them, fine-tunes with --prompt, refuses mixed methods and Custom Diffusion flags', async () => {
  const f = await setup();
  const dir = await tempFolder('imprint-cones-merge-');
  const dogFile = join(dir, 'dog.safetensors'), catFile = join(dir, 'cat.safetensors');
  await saveConcept(dogFile, f.dog);
  await saveConcept(catFile, f.cat);
  const out = join(dir, 'both.safetensors');
  const write = process.stdout.write;
  let printed = '';
  process.stdout.write = ((s: string) => ((printed += s), true)) as typeof process.stdout.write;
  try {
    await CONCEPT_COMMANDS.merge.run({ model: f.model, out }, [dogFile, catFile]);
    const united = await loadConcept(out, { method: 'cones' });
    assert.equal(neuronsOf(united), neuronsOf({ ...f.dog, neurons: uniteNeurons([f.dog, f.cat]).neurons }));
    assert.match(printed, /united 2 neuron sets: \d+ neurons shut, \d+ shared/);
    await CONCEPT_COMMANDS.merge.run({ model: f.model, out, prompt: [PROMPT], excite: ['dog', 'cat'], images: [f.dogImages, f.catImages], steps: '2', quiet: true }, [dogFile, catFile]);
    const tuned = await loadConcept(out, { method: 'cones' });
    assert.ok((tuned.lora?.size ?? 0) > 0, 'LoRA factors saved');
    assert.equal(neuronsOf(tuned), neuronsOf(united));
    assert.match(printed, /fine-tuned 2 steps/);
    disposeConcept(united), disposeConcept(tuned);
  } finally {
    process.stdout.write = write;
  }
  await assertRejects(() => CONCEPT_COMMANDS.merge.run({ model: f.model, out, ridge: '1e-3' }, [dogFile, catFile]), 'INVALID_ARGUMENT', /--ridge is not used for Cones concept files/);
});

t.run();
