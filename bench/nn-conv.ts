// nn-conv suite: conv2d forward and backward (dx + dweight) and nearest 2x
// upsampling on SD-sized CPU shapes, with PyTorch's time for the same shapes
// from the same run (median of runs, same thread count).
import { spawnSync } from 'node:child_process';

import { numThreads, randn } from '../lib/index.js';
import { conv2d, conv2dBackward, upsampleNearest2x, upsampleNearest2xBackward } from '../lib/nn/conv.js';
import { time } from './measure.js';
import { findPeer } from './peer.js';

type Pad4 = [number, number, number, number];

interface ConvCase {
  name: string;
  x: number[];
  w: number[];
  stride: number;
  padding: Pad4;
}

const CONV_CASES: ConvCase[] = [
  { name: 'unet-3x3-320-64x64', x: [1, 320, 64, 64], w: [320, 320, 3, 3], stride: 1, padding: [1, 1, 1, 1] },
  { name: 'vae-down-3x3s2-128-128x128', x: [1, 128, 128, 128], w: [128, 128, 3, 3], stride: 2, padding: [0, 1, 0, 1] },
  { name: 'unet-1x1-640to320-32x32', x: [1, 640, 32, 32], w: [320, 640, 1, 1], stride: 1, padding: [0, 0, 0, 0] },
];
const UPSAMPLE_SHAPE = [1, 320, 64, 64];

// Asymmetric padding runs as F.pad + unpadded conv2d, as in the SD VAE; the
// backward is aten.convolution_backward on the padded input, cropped.
const PEER_SCRIPT = `
import json, sys, time, torch, torch.nn.functional as F
cases, threads = json.loads(sys.stdin.read()), int(sys.argv[1])
torch.set_num_threads(threads)
def timed(fn, warmup=2, min_runs=5, max_runs=50, min_seconds=1.0):
    for _ in range(warmup): fn()
    samples, start = [], time.perf_counter()
    while len(samples) < min_runs or (len(samples) < max_runs and time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter(); fn(); samples.append(time.perf_counter() - t0)
    samples.sort()
    return samples[len(samples) // 2]
out = []
with torch.no_grad():
    for c in cases:
        if c["kind"] == "upsample":
            x = torch.randn(c["x"])
            y = F.interpolate(x, scale_factor=2, mode="nearest")
            out.append(timed(lambda: F.interpolate(x, scale_factor=2, mode="nearest")))
            out.append(timed(lambda: torch.ops.aten.upsample_nearest2d_backward(y, list(y.shape[2:]), c["x"], 2.0, 2.0)))
            continue
        x, w, b, s = torch.randn(c["x"]), torch.randn(c["w"]) * 0.05, torch.randn(c["w"][0]), c["stride"]
        top, bottom, left, right = c["padding"]
        sym = top == bottom == left == right
        pad = top if sym else 0
        padded = lambda: x if sym else F.pad(x, (left, right, top, bottom))
        fwd = lambda: F.conv2d(padded(), w, b, stride=s, padding=pad)
        dy = torch.randn_like(fwd())
        def bwd():
            xp = padded()
            dx, dw, _ = torch.ops.aten.convolution_backward(dy, xp, w, None, [s, s], [pad, pad], [1, 1], False, [0, 0], 1, [True, True, False])
            if not sym: dx = dx[:, :, top:top + c["x"][2], left:left + c["x"][3]].contiguous()
            return dx, dw
        out.append(timed(fwd))
        out.append(timed(bwd))
print(json.dumps(out))
`;

function runConvPeer(python: string, threads: number): (number | null)[] {
  const cases = [...CONV_CASES.map((c) => ({ kind: 'conv', ...c })), { kind: 'upsample', x: UPSAMPLE_SHAPE }];
  const result = spawnSync(python, ['-c', PEER_SCRIPT, String(threads)], { input: JSON.stringify(cases), encoding: 'utf8' });
  if (result.status !== 0) {
    process.stderr.write(`bench: pytorch peer failed: ${result.stderr.split('\n').slice(-3).join(' ')}\n`);
    return new Array<null>(cases.length * 2).fill(null);
  }
  return JSON.parse(result.stdout) as number[];
}

const convFlops = (c: ConvCase, ho: number, wo: number): number => 2 * c.x[0] * c.w[0] * c.w[1] * c.w[2] * c.w[3] * ho * wo;

export async function benchconv(emit: (record: object) => void): Promise<void> {
  const threads = numThreads();
  const peer = findPeer();
  if (!peer) process.stderr.write('bench: no PyTorch peer (apt-get install python3-torch to compare)\n');
  const peerTimes = peer ? runConvPeer(peer.python, threads) : [];
  const record = (name: string, params: object, imprint_s: number, runs: number, flops: number | undefined, peer_s: number | null | undefined) =>
    emit({
      suite: 'nn-conv',
      name,
      params: { ...params, threads },
      device: 'cpu',
      imprint_s,
      runs,
      ...(flops ? { flops, gflops: flops / imprint_s / 1e9 } : {}),
      ...(peer_s != null ? { peer: `${peer!.name} cpu`, peer_s, ratio: imprint_s / peer_s } : {}),
    });

  for (const [i, c] of CONV_CASES.entries()) {
    const x = await randn(c.x, { seed: 1 });
    const w = await randn(c.w, { seed: 2 });
    const b = await randn([c.w[0]], { seed: 3 });
    const options = { stride: c.stride, padding: c.padding };
    const y = await conv2d(x, w, b, options);
    const dy = await randn([...y.shape], { seed: 4 });
    const flops = convFlops(c, y.shape[2], y.shape[3]);
    const params = { x: c.x, weight: c.w, stride: c.stride, padding: c.padding };
    const tf = await time(async () => (await conv2d(x, w, b, options)).dispose());
    record(`${c.name}-forward`, params, tf.median_s, tf.runs, flops, peerTimes[2 * i]);
    const tb = await time(async () => {
      const g = await conv2dBackward(dy, x, w, options);
      g.dx.dispose();
      g.dweight?.dispose();
    });
    record(`${c.name}-backward`, params, tb.median_s, tb.runs, 2 * flops, peerTimes[2 * i + 1]);
    for (const t of [x, w, b, y, dy]) t.dispose();
  }

  const x = await randn(UPSAMPLE_SHAPE, { seed: 5 });
  const y = await upsampleNearest2x(x);
  const base = 2 * CONV_CASES.length;
  const tf = await time(async () => (await upsampleNearest2x(x)).dispose());
  record('upsample-nearest2x-forward', { x: UPSAMPLE_SHAPE }, tf.median_s, tf.runs, undefined, peerTimes[base]);
  const tb = await time(async () => (await upsampleNearest2xBackward(y)).dispose());
  record('upsample-nearest2x-backward', { dy: y.shape }, tb.median_s, tb.runs, undefined, peerTimes[base + 1]);
  x.dispose();
  y.dispose();
}
