// attention suite: forward and backward time on the SD attention shapes on the
// CPU, and the forward's peak memory next to the [Nq, Nk] f32 score matrix an
// unfused softmax(q·kᵀ)·v would hold.
import { memoryStats, numThreads, randn, resetPeakMemory } from '../lib/index.js';
import { attention, attentionBackward } from '../lib/nn/attn.js';
import { time } from './measure.js';

interface AttnCase {
  name: string;
  q: number[];
  kv: number[];
}

const CASES: AttnCase[] = [
  { name: 'sd-self-8x4096x40', q: [1, 8, 4096, 40], kv: [1, 8, 4096, 40] },
  { name: 'sd-cross-2x8x4096x40-kv77', q: [2, 8, 4096, 40], kv: [2, 8, 77, 40] },
  { name: 'sd-self-8x1024x80', q: [1, 8, 1024, 80], kv: [1, 8, 1024, 80] },
  { name: 'sd-self-8x256x160', q: [1, 8, 256, 160], kv: [1, 8, 256, 160] },
];

export async function benchattn(emit: (record: object) => void): Promise<void> {
  const threads = numThreads();
  for (const c of CASES) {
    const [q, k, v, dO] = [await randn(c.q, { seed: 1 }), await randn(c.kv, { seed: 2 }), await randn(c.kv, { seed: 3 }), await randn(c.q, { seed: 4 })];
    const base = memoryStats().liveBytes;
    resetPeakMemory();
    const saved = await attention(q, k, v);
    const peakBytes = memoryStats().peakBytes - base;
    const forward = await time(async () => {
      const r = await attention(q, k, v);
      r.o.dispose();
      r.lse.dispose();
    });
    const backward = await time(async () => {
      const g = await attentionBackward(dO, q, k, v, saved);
      g.dq.dispose();
      g.dk.dispose();
      g.dv.dispose();
    });
    const scoreBytes = c.q[0] * c.q[1] * c.q[2] * c.kv[2] * 4;
    const params = { q: c.q, kv: c.kv, dtype: 'f32', threads };
    emit({ suite: 'attn', name: `${c.name}-forward`, params, device: 'cpu', imprint_s: forward.median_s, runs: forward.runs, peak_bytes: peakBytes, score_matrix_bytes: scoreBytes });
    emit({ suite: 'attn', name: `${c.name}-backward`, params, device: 'cpu', imprint_s: backward.median_s, runs: backward.runs });
    for (const t of [q, k, v, dO, saved.o, saved.lse]) t.dispose();
  }
}
