// misc suite: token embedding (and its row-masked gradient), concat/split of a
// UNet skip, the (masked) MSE loss, AdamW and gradient clipping on SD sizes, vs
// PyTorch. PyTorch updates in place where Imprint returns new tensors. Bytes:
// one read of each input and one write of each output.
import { rand, randn, tensor, type DType, type Tensor } from '../lib/index.js';
import * as misc from '../lib/nn/index.js';
import type { BenchCase } from './cases.js';
import { numel, opStep, randnEach, torchRandn, type TorchSnippet } from './helpers.js';

const VOCAB = 49408;
const TOKENS = [2, 77, 768];
const SKIP_A = [2, 640, 32, 32];
const SKIP_B = [2, 320, 32, 32];
const LATENT = [8, 4, 64, 64];
const LATENT_MASK = [8, 1, 64, 64];
const CLIP = { count: 20, numel: 1_000_000 };

// A host-built tensor moved to the device.
async function onDevice<D extends DType>(host: Tensor<D>, device: string): Promise<Tensor<D>> {
  if (device === 'cpu') return host;
  const moved = await host.to(device);
  host.dispose();
  return moved;
}
const ids = (device: string) => onDevice(tensor(Int32Array.from({ length: 154 }, (_, i) => (i * 7919) % VOCAB), { shape: [2, 77] }), device);
const IDS_PY = `ids = (torch.arange(154, device=device) * 7919 % ${VOCAB}).reshape(2, 77)`;
const EMBED_GRAD_PY = `table = torch.randn([${VOCAB}, 768], device=device, requires_grad=True)\n${IDS_PY}\ny = F.embedding(ids, table)\ndy = torch.randn_like(y)`;
const ROW_MASK_PY = `mask = torch.zeros(${VOCAB}, 1, device=device)\nmask[-2:] = 1`;
const MASKED_MSE_PY = 'def masked_mse(p, q, m):\n    return ((p - q) ** 2 * m).sum() / m.expand_as(p).sum()';
const ADAMW_PY = (n: number) => `w = torch.randn(${n}, device=device, requires_grad=True)\nw.grad = torch.randn(${n}, device=device)\nopt = torch.optim.AdamW([w], lr=1e-3)\nopt.step()`;
const CLIP_PY = `ps = [torch.zeros(${CLIP.numel}, device=device, requires_grad=True) for _ in range(${CLIP.count})]\nfor p in ps: p.grad = torch.randn(${CLIP.numel}, device=device)`;

export function miscCases(device: string): BenchCase[] {
  const mk = (name: string, params: Record<string, unknown>, bytes: number, prepare: BenchCase['prepare'], torch: TorchSnippet): BenchCase =>
    ({ suite: 'misc', name, device, params: { ...params, dtype: 'f32' }, bytes, prepare, torch });
  const rowBytes = 4 * numel(TOKENS);
  const gradBytes = 4 * VOCAB * 768 + rowBytes;
  const embed = { table: [VOCAB, 768], ids: [2, 77] };
  const skip = { a: SKIP_A, b: SKIP_B, dim: 1 };
  const skipBytes = 8 * (numel(SKIP_A) + numel(SKIP_B));
  const n = numel(LATENT);
  const masked = { pred: LATENT, mask: LATENT_MASK };
  const mseBytes = 4 * 2 * n;
  const maskedBytes = mseBytes + 4 * numel(LATENT_MASK);
  const latentPy = torchRandn({ p: LATENT, q: LATENT });
  const latentGradPy = torchRandn({ p: LATENT, q: LATENT }, ['p']);
  const maskPy = `m = torch.rand(${JSON.stringify(LATENT_MASK)}, device=device)`;
  const embeddingBackward = (rowMask: boolean) => async () => {
    const [dy] = await randnEach(device, TOKENS);
    const mask = rowMask ? await onDevice(tensor(new Uint8Array(VOCAB).fill(1, VOCAB - 2), { shape: [VOCAB] }), device) : undefined;
    const i = await ids(device);
    return opStep([dy, i, mask], () => misc.embeddingBackward(dy, i, { vocab: VOCAB, rowMask: mask }));
  };
  const mse = (withMask: boolean, backward: boolean) => async () => {
    const [pred, target] = await randnEach(device, LATENT, LATENT);
    const mask = withMask ? await rand(LATENT_MASK, { seed: 3, device }) : undefined;
    const op = () => Promise.all([misc.mseLoss(pred, target, { mask }), backward ? misc.mseLossBackward(pred, target, { mask }) : null]);
    return opStep([pred, target, mask], op);
  };
  const adamw = (size: number) => async () => {
    const [param, grad, expAvg] = await randnEach(device, [size], [size], [size]);
    const state = { param, grad, expAvg, expAvgSq: await rand([size], { seed: 4, device }) };
    return opStep(state, () => misc.adamwStep(state, { lr: 1e-3, step: 2 }));
  };
  return [
    mk('embedding-forward', embed, 2 * rowBytes, async () => {
      const table = await randn([VOCAB, 768], { seed: 1, device });
      const i = await ids(device);
      return opStep([table, i], () => misc.embedding(i, table));
    }, { setup: `table = torch.randn([${VOCAB}, 768], device=device)\n${IDS_PY}`, run: 'F.embedding(ids, table)' }),
    mk('embedding-backward', embed, gradBytes, embeddingBackward(false), { setup: EMBED_GRAD_PY, run: 'torch.autograd.grad(y, [table], dy, retain_graph=True)' }),
    mk('embedding-backward-masked', embed, gradBytes, embeddingBackward(true), { setup: `${EMBED_GRAD_PY}\n${ROW_MASK_PY}`, run: 'torch.autograd.grad(y, [table], dy, retain_graph=True)[0] * mask' }),
    mk('concat-skip', skip, skipBytes, async () => {
      const [a, b] = await randnEach(device, SKIP_A, SKIP_B);
      return opStep([a, b], () => misc.concat([a, b], { dim: 1 }));
    }, { setup: torchRandn({ a: SKIP_A, b: SKIP_B }), run: 'torch.cat([a, b], 1)' }),
    mk('split-skip', skip, skipBytes, async () => {
      const [x] = await randnEach(device, [2, 960, 32, 32]);
      return opStep(x, () => misc.split(x, [640, 320], { dim: 1 }));
    }, { setup: torchRandn({ x: [2, 960, 32, 32] }), run: '[p.contiguous() for p in torch.split(x, [640, 320], 1)]' }),
    mk('mse-forward', { pred: LATENT }, mseBytes, mse(false, false), { setup: latentPy, run: 'F.mse_loss(p, q)' }),
    mk('mse-forward+backward', { pred: LATENT }, 2 * mseBytes + 4 * n, mse(false, true), { setup: latentGradPy, run: 'torch.autograd.grad(F.mse_loss(p, q), [p])' }),
    mk('mse-masked-forward', masked, maskedBytes, mse(true, false), { setup: `${MASKED_MSE_PY}\n${latentPy}\n${maskPy}`, run: 'masked_mse(p, q, m)' }),
    mk('mse-masked-forward+backward', masked, 2 * maskedBytes + 4 * n, mse(true, true), { setup: `${MASKED_MSE_PY}\n${latentGradPy}\n${maskPy}`, run: 'torch.autograd.grad(masked_mse(p, q, m), [p])' }),
    mk('adamw-1M', { numel: 1_000_000 }, 28 * 1_000_000, adamw(1_000_000), { setup: ADAMW_PY(1_000_000), run: 'opt.step()' }),
    mk('adamw-20M', { numel: 20_000_000 }, 28 * 20_000_000, adamw(20_000_000), { setup: ADAMW_PY(20_000_000), run: 'opt.step()' }),
    mk(`clip-grad-norm-${CLIP.count}x1M`, { grads: CLIP.count, numel: CLIP.numel }, 12 * CLIP.count * CLIP.numel, async () => {
      const grads = await Promise.all(Array.from({ length: CLIP.count }, (_, i) => randn([CLIP.numel], { seed: 20 + i, device })));
      return opStep(grads, () => misc.clipGradNorm(grads, { maxNorm: 1 }));
    }, { setup: CLIP_PY, run: `torch.nn.utils.clip_grad_norm_(ps, 1.0)` }),
  ];
}
