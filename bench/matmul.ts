// matmul suite: GFLOP/s on SD-shaped and square problems, per device, with
// PyTorch's time for the same shapes from the same run.
import { devices, matmul, memoryStats, numThreads, randn, resetPeakMemory } from '../lib/index.js';
import { time } from './measure.js';
import { findPeer, runPeer, type PeerCase } from './peer.js';

interface MatmulCase {
  name: string;
  a: number[];
  b: number[];
  transposeB?: boolean;
}

const CASES: MatmulCase[] = [
  { name: 'square-256', a: [256, 256], b: [256, 256] },
  { name: 'square-512', a: [512, 512], b: [512, 512] },
  { name: 'square-1024', a: [1024, 1024], b: [1024, 1024] },
  { name: 'sd-proj-4096x320x320', a: [4096, 320], b: [320, 320] },
  { name: 'sd-cross-kv-77x768x320', a: [77, 768], b: [768, 320] },
  { name: 'sd-attn-scores-8x4096x40x77', a: [8, 4096, 40], b: [8, 77, 40], transposeB: true },
];

function flopsOf(c: MatmulCase): number {
  const m = c.a[c.a.length - 2];
  const k = c.a[c.a.length - 1];
  const n = c.transposeB ? c.b[c.b.length - 2] : c.b[c.b.length - 1];
  const batch = c.a.slice(0, -2).reduce((x, y) => x * y, 1);
  return 2 * batch * m * n * k;
}

export async function benchMatmul(suite: string, emit: (record: object) => void): Promise<void> {
  const targets: { device: string; dtypes: string[] }[] = [];
  if (suite !== 'cuda') targets.push({ device: 'cpu', dtypes: ['f32'] });
  const cuda = devices().cuda;
  if (suite !== 'cpu' && cuda.available) targets.push({ device: 'cuda:0', dtypes: ['f32', 'bf16'] });
  if (suite === 'cuda' && !cuda.available) process.stderr.write(`bench: no CUDA device (${cuda.reason})\n`);

  const peer = findPeer();
  if (!peer) process.stderr.write('bench: no PyTorch peer (apt-get install python3-torch to compare)\n');
  const threads = numThreads();

  for (const { device, dtypes } of targets) {
    for (const dtype of dtypes) {
      const torchDtype = { f32: 'float32', f16: 'float16', bf16: 'bfloat16' }[dtype];
      const peerCases: PeerCase[] = CASES.map((c) => ({
        device,
        setup: `a = torch.randn(${JSON.stringify(c.a)}, dtype=torch.${torchDtype}, device=device)\nb = torch.randn(${JSON.stringify(c.b)}, dtype=torch.${torchDtype}, device=device)`,
        run: c.transposeB ? 'torch.matmul(a, b.transpose(-1, -2))' : 'torch.matmul(a, b)',
      }));
      const peerTimes = peer ? runPeer(peer, peerCases, threads) : CASES.map(() => null);
      for (const [i, c] of CASES.entries()) {
        const a = await randn(c.a, { seed: 1, device, dtype: dtype as 'f32' });
        const b = await randn(c.b, { seed: 2, device, dtype: dtype as 'f32' });
        resetPeakMemory(device);
        const base = memoryStats(device).liveBytes;
        const t = await time(async () => (await matmul(a, b, { transposeB: c.transposeB })).dispose());
        const peakBytes = memoryStats(device).peakBytes - base;
        a.dispose();
        b.dispose();
        const flops = flopsOf(c);
        const peer_s = peerTimes[i];
        emit({
          suite: 'matmul',
          name: c.name,
          params: { a: c.a, b: c.b, transposeB: c.transposeB ?? false, dtype, threads: device === 'cpu' ? threads : undefined },
          device,
          imprint_s: t.median_s,
          runs: t.runs,
          flops,
          gflops: flops / t.median_s / 1e9,
          peak_bytes: peakBytes,
          ...(peer_s != null ? { peer: `${peer!.name} ${device.startsWith('cuda') ? 'cuda' : 'cpu'}`, peer_s, ratio: t.median_s / peer_s } : {}),
        });
      }
    }
  }
}

