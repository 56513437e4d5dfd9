// Activation suite (CPU): SiLU, GELU, quick-GELU, GEGLU, softmax and scale,
// forward and backward on Stable Diffusion sizes, with PyTorch's time for the
// same work from the same run. PyTorch's GEGLU and quick-GELU are the
// compositions diffusers and CLIP use; their backward runs autograd over
// the retained graph.
import { spawnSync } from 'node:child_process';

import { numThreads, randn, type Tensor } from '../lib/index.js';
import * as act from '../lib/nn/act.js';
import { time } from './measure.js';
import { findPeer } from './peer.js';

interface ActCase {
  name: string;
  params: Record<string, unknown>;
  run: () => Promise<Tensor>;
}

const UNET_ACT = [2, 320, 64, 64];
const GEGLU_IN = [2, 4096, 2560];
const GEGLU_OUT = [2, 4096, 1280];
const CROSS_SCORES = [16, 4096, 77];
const SELF_SCORES = [8, 1024, 1024];

// The same cases in PyTorch: each entry builds its inputs, then returns the timed function.
const PEER_SCRIPT = `
import json, sys, time, torch, torch.nn.functional as F
torch.set_num_threads(int(sys.argv[1]))
aten = torch.ops.aten
def timed(fn, warmup=2, min_runs=5, max_runs=50, min_seconds=1.0):
    for _ in range(warmup): fn()
    samples, start = [], time.perf_counter()
    while len(samples) < min_runs or (len(samples) < max_runs and time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter(); fn(); samples.append(time.perf_counter() - t0)
    samples.sort()
    return samples[len(samples) // 2]
def quick_gelu(x): return x * torch.sigmoid(1.702 * x)
def geglu(x):
    value, gate = x.chunk(2, dim=-1)
    return value * F.gelu(gate)
def forward(fn, shape):
    x = torch.randn(shape)
    return lambda: fn(x)
def backward(op, shape):
    x, dy = torch.randn(shape), torch.randn(shape)
    return lambda: op(dy, x)
def autograd(fn, shape, out_shape):
    x = torch.randn(shape, requires_grad=True)
    y, dy = fn(x), torch.randn(out_shape)
    return lambda: torch.autograd.grad(y, x, dy, retain_graph=True)
def softmax_backward(shape):
    y, dy = F.softmax(torch.randn(shape), -1), torch.randn(shape)
    return lambda: aten._softmax_backward_data(dy, y, -1, torch.float32)
A, GI, GO, CS, SS = ${JSON.stringify(UNET_ACT)}, ${JSON.stringify(GEGLU_IN)}, ${JSON.stringify(GEGLU_OUT)}, ${JSON.stringify(CROSS_SCORES)}, ${JSON.stringify(SELF_SCORES)}
CASES = {
    "silu-forward": lambda: forward(F.silu, A), "silu-backward": lambda: backward(aten.silu_backward, A),
    "gelu-forward": lambda: forward(F.gelu, A), "gelu-backward": lambda: backward(aten.gelu_backward, A),
    "quick-gelu-forward": lambda: forward(quick_gelu, A), "quick-gelu-backward": lambda: autograd(quick_gelu, A, A),
    "geglu-forward": lambda: forward(geglu, GI), "geglu-backward": lambda: autograd(geglu, GI, GO),
    "softmax-cross-forward": lambda: forward(lambda x: F.softmax(x, -1), CS), "softmax-cross-backward": lambda: softmax_backward(CS),
    "softmax-self-forward": lambda: forward(lambda x: F.softmax(x, -1), SS), "softmax-self-backward": lambda: softmax_backward(SS),
    "scale-forward": lambda: forward(lambda x: x * 0.125, A),
}
print(json.dumps({name: timed(CASES[name]()) for name in json.loads(sys.stdin.read())}))
`;

async function cases(): Promise<ActCase[]> {
  const x = await randn(UNET_ACT, { seed: 1 });
  const dy = await randn(UNET_ACT, { seed: 2 });
  const gx = await randn(GEGLU_IN, { seed: 3 });
  const gdy = await randn(GEGLU_OUT, { seed: 4 });
  const cross = await randn(CROSS_SCORES, { seed: 5 });
  const crossY = await act.softmax(cross);
  const crossDy = await randn(CROSS_SCORES, { seed: 6 });
  const self = await randn(SELF_SCORES, { seed: 7 });
  const selfY = await act.softmax(self);
  const selfDy = await randn(SELF_SCORES, { seed: 8 });
  const a = { shape: UNET_ACT };
  const g = { shape: GEGLU_IN };
  return [
    { name: 'silu-forward', params: a, run: () => act.silu(x) },
    { name: 'silu-backward', params: a, run: () => act.siluBackward(dy, x) },
    { name: 'gelu-forward', params: a, run: () => act.gelu(x) },
    { name: 'gelu-backward', params: a, run: () => act.geluBackward(dy, x) },
    { name: 'quick-gelu-forward', params: a, run: () => act.quickGelu(x) },
    { name: 'quick-gelu-backward', params: a, run: () => act.quickGeluBackward(dy, x) },
    { name: 'geglu-forward', params: g, run: () => act.geglu(gx) },
    { name: 'geglu-backward', params: g, run: () => act.gegluBackward(gdy, gx) },
    { name: 'softmax-cross-forward', params: { shape: CROSS_SCORES }, run: () => act.softmax(cross) },
    { name: 'softmax-cross-backward', params: { shape: CROSS_SCORES }, run: () => act.softmaxBackward(crossDy, crossY) },
    { name: 'softmax-self-forward', params: { shape: SELF_SCORES }, run: () => act.softmax(self) },
    { name: 'softmax-self-backward', params: { shape: SELF_SCORES }, run: () => act.softmaxBackward(selfDy, selfY) },
    { name: 'scale-forward', params: a, run: () => act.scale(x, 0.125) },
  ];
}

export async function benchact(emit: (record: object) => void): Promise<void> {
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
    const t = await time(async () => (await c.run()).dispose());
    const peer_s = peerTimes[c.name];
    emit({
      suite: 'nn-act',
      name: c.name,
      params: { ...c.params, dtype: 'f32', threads },
      device: 'cpu',
      imprint_s: t.median_s,
      runs: t.runs,
      ...(peer_s != null ? { peer: `${peer!.name} cpu`, peer_s, ratio: t.median_s / peer_s } : {}),
    });
  }
}
