// misc-ops suite (CPU): embedding, concat/split, MSE loss, AdamW and gradient
// clipping on Stable Diffusion sizes, with PyTorch's time for the same work
// from the same run. PyTorch updates in place; Imprint returns new tensors.
import { spawnSync } from 'node:child_process';

import { numThreads, randn, rand, tensor, type Tensor } from '../lib/index.js';
import * as misc from '../lib/nn/misc.js';
import { time } from './measure.js';
import { findPeer } from './peer.js';

interface MiscCase {
  name: string;
  params: Record<string, unknown>;
  run: () => Promise<unknown>;
}

// The same cases in PyTorch: each entry builds its inputs, then returns the timed function.
const PEER_SCRIPT = `
import json, sys, time, torch, torch.nn.functional as F
torch.set_num_threads(int(sys.argv[1]))
def timed(fn, warmup=2, min_runs=5, max_runs=50, min_seconds=1.0):
    for _ in range(warmup): fn()
    samples, start = [], time.perf_counter()
    while len(samples) < min_runs or (len(samples) < max_runs and time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter(); fn(); samples.append(time.perf_counter() - t0)
    samples.sort()
    return samples[len(samples) // 2]
def embedding():
    table, ids = torch.randn(49408, 768), torch.randint(0, 49408, (2, 77))
    return lambda: F.embedding(ids, table)
def embedding_backward(masked):
    dy, ids = torch.randn(2, 77, 768), torch.randint(0, 49408, (2, 77))
    mask = torch.zeros(49408, 1); mask[-2:] = 1
    if masked: return lambda: torch.ops.aten.embedding_dense_backward(dy, ids, 49408, -1, False) * mask
    return lambda: torch.ops.aten.embedding_dense_backward(dy, ids, 49408, -1, False)
def concat():
    a, b = torch.randn(2, 640, 32, 32), torch.randn(2, 320, 32, 32)
    return lambda: torch.cat([a, b], 1)
def split():
    x = torch.randn(2, 960, 32, 32)
    return lambda: [p.contiguous() for p in torch.split(x, [640, 320], 1)]
def mse(masked, backward):
    p, q, m = torch.randn(8, 4, 64, 64, requires_grad=True), torch.randn(8, 4, 64, 64), torch.rand(8, 1, 64, 64)
    loss = (lambda: ((p - q) ** 2 * m).sum() / m.expand_as(p).sum()) if masked else (lambda: F.mse_loss(p, q))
    if not backward:
        return lambda: torch.no_grad()(loss)()
    def step():
        p.grad = None
        loss().backward()
    return step
def adamw(n):
    w = torch.randn(n, requires_grad=True); w.grad = torch.randn(n)
    opt = torch.optim.AdamW([w], lr=1e-3); opt.step()
    return opt.step
def clip():
    ps = [torch.zeros(1_000_000, requires_grad=True) for _ in range(20)]
    for p in ps: p.grad = torch.randn(1_000_000)
    return lambda: torch.nn.utils.clip_grad_norm_(ps, 1.0)
CASES = {
    "embedding-forward": embedding, "embedding-backward": lambda: embedding_backward(False),
    "embedding-backward-masked": lambda: embedding_backward(True),
    "concat-skip": concat, "split-skip": split,
    "mse-forward": lambda: mse(False, False), "mse-forward+backward": lambda: mse(False, True),
    "mse-masked-forward": lambda: mse(True, False), "mse-masked-forward+backward": lambda: mse(True, True),
    "adamw-1M": lambda: adamw(1_000_000), "adamw-20M": lambda: adamw(20_000_000),
    "clip-grad-norm-20x1M": clip,
}
print(json.dumps({name: timed(CASES[name]()) for name in json.loads(sys.stdin.read())}))
`;

async function cases(): Promise<MiscCase[]> {
  const table = await randn([49408, 768], { seed: 1 });
  const ids = tensor(Int32Array.from({ length: 154 }, (_, i) => (i * 7919) % 49408), { shape: [2, 77] });
  const dy = await randn([2, 77, 768], { seed: 2 });
  const maskBytes = new Uint8Array(49408);
  maskBytes.fill(1, 49406);
  const rowMask = tensor(maskBytes, { shape: [49408] });
  const a = await randn([2, 640, 32, 32], { seed: 3 });
  const b = await randn([2, 320, 32, 32], { seed: 4 });
  const ab = await misc.concat([a, b], { dim: 1 });
  const pred = await randn([8, 4, 64, 64], { seed: 5 });
  const target = await randn([8, 4, 64, 64], { seed: 6 });
  const mask = await rand([8, 1, 64, 64], { seed: 7 });
  const adamw = async (n: number) => {
    const v = await rand([n], { seed: 8 });
    return { param: await randn([n], { seed: 9 }), grad: await randn([n], { seed: 10 }), expAvg: await randn([n], { seed: 11 }), expAvgSq: await v.mul(v) };
  };
  const [adamw1M, adamw20M] = [await adamw(1_000_000), await adamw(20_000_000)];
  const grads = await Promise.all(Array.from({ length: 20 }, (_, i) => randn([1_000_000], { seed: 20 + i })));
  const e = { table: [49408, 768], ids: [2, 77] };
  const skip = { a: [2, 640, 32, 32], b: [2, 320, 32, 32], dim: 1 };
  const mseShape = { pred: [8, 4, 64, 64] };
  const masked = { ...mseShape, mask: [8, 1, 64, 64] };
  return [
    { name: 'embedding-forward', params: e, run: () => misc.embedding(ids, table) },
    { name: 'embedding-backward', params: e, run: () => misc.embeddingBackward(dy, ids, { vocab: 49408 }) },
    { name: 'embedding-backward-masked', params: e, run: () => misc.embeddingBackward(dy, ids, { vocab: 49408, rowMask }) },
    { name: 'concat-skip', params: skip, run: () => misc.concat([a, b], { dim: 1 }) },
    { name: 'split-skip', params: skip, run: () => misc.split(ab, [640, 320], { dim: 1 }) },
    { name: 'mse-forward', params: mseShape, run: () => misc.mseLoss(pred, target) },
    { name: 'mse-forward+backward', params: mseShape, run: () => Promise.all([misc.mseLoss(pred, target), misc.mseLossBackward(pred, target)]) },
    { name: 'mse-masked-forward', params: masked, run: () => misc.mseLoss(pred, target, { mask }) },
    { name: 'mse-masked-forward+backward', params: masked, run: () => Promise.all([misc.mseLoss(pred, target, { mask }), misc.mseLossBackward(pred, target, { mask })]) },
    { name: 'adamw-1M', params: { numel: 1_000_000 }, run: () => misc.adamwStep(adamw1M, { lr: 1e-3, step: 2 }) },
    { name: 'adamw-20M', params: { numel: 20_000_000 }, run: () => misc.adamwStep(adamw20M, { lr: 1e-3, step: 2 }) },
    { name: 'clip-grad-norm-20x1M', params: { grads: 20, numel: 1_000_000 }, run: () => misc.clipGradNorm(grads, { maxNorm: 1 }) },
  ];
}

// Frees every tensor in an op's result (a tensor, an array or an object of them).
function dispose(result: unknown): void {
  if (result && typeof result === 'object') {
    if ('dispose' in result && typeof (result as Tensor).dispose === 'function') (result as Tensor).dispose();
    else for (const v of Object.values(result)) dispose(v);
  }
}

export async function benchmisc(emit: (record: object) => void): Promise<void> {
  const threads = numThreads();
  const list = await cases();
  const peer = findPeer();
  let peerTimes: Record<string, number> = {};
  if (!peer) {
    process.stderr.write('bench: no PyTorch peer (apt-get install python3-torch to compare)\n');
  } else {
    const result = spawnSync(peer.python, ['-c', PEER_SCRIPT, String(threads)], { input: JSON.stringify(list.map((c) => c.name)), encoding: 'utf8' });
    if (result.status === 0) peerTimes = JSON.parse(result.stdout) as Record<string, number>;
    else process.stderr.write(`bench: ${peer.name} failed: ${result.stderr.split('\n').slice(-3).join(' ')}\n`);
  }
  for (const c of list) {
    const t = await time(async () => dispose(await c.run()));
    const peer_s = peerTimes[c.name];
    emit({
      suite: 'nn-misc',
      name: c.name,
      params: { ...c.params, threads },
      device: 'cpu',
      imprint_s: t.median_s,
      runs: t.runs,
      ...(peer_s != null ? { peer: `${peer!.name} cpu`, peer_s, ratio: t.median_s / peer_s } : {}),
    });
  }
}
