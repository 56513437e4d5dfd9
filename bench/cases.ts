// Runs benchmark cases: each is timed here (median after warm-up) and, when
// PyTorch is installed, by the peer in the same run, then printed as one JSON
// object with the ratio imprint_s / peer_s.
import { memoryStats, numThreads, resetPeakMemory } from '../lib/index.js';
import { time } from './measure.js';
import { findPeer, runPeer, type PeerCase } from './peer.js';

export interface BenchCase {
  suite: string;
  name: string;
  device: string;
  params: Record<string, unknown>;
  flops?: number;
  bytes?: number;
  /** Builds inputs; returns the timed step (which must dispose what it makes) and a cleanup. */
  prepare(): Promise<{ step: () => Promise<unknown>; dispose: () => void }>;
  /** The same work in PyTorch: `setup` code and the `run` expression (see peer.ts). */
  torch?: { setup: string; run: string };
  /** Fewer repetitions for steps that take seconds (default: 2 warm-up runs, at least 5 timed). */
  timing?: { warmup?: number; minRuns?: number };
}

export async function runCases(cases: BenchCase[], emit: (record: object) => void): Promise<void> {
  const threads = numThreads();
  const peer = findPeer();
  if (!peer) process.stderr.write('bench: no PyTorch peer (apt-get install python3-torch to compare)\n');
  const withPeer = cases.filter((c) => c.torch);
  const peerCases: PeerCase[] = withPeer.map((c) => ({ device: c.device, ...c.torch! }));
  const peerTimes = new Map<BenchCase, number | null>();
  if (peer && peerCases.length) runPeer(peer, peerCases, threads).forEach((t, i) => peerTimes.set(withPeer[i], t));

  for (const c of cases) {
    const { step, dispose } = await c.prepare();
    resetPeakMemory(c.device);
    const base = memoryStats(c.device).liveBytes;
    const t = await time(step, c.timing);
    const peakBytes = memoryStats(c.device).peakBytes - base;
    dispose();
    const peer_s = peerTimes.get(c) ?? null;
    emit({
      suite: c.suite,
      name: c.name,
      params: { ...c.params, threads: c.device === 'cpu' ? threads : undefined },
      device: c.device,
      imprint_s: t.median_s,
      runs: t.runs,
      ...(c.flops ? { flops: c.flops, gflops: c.flops / t.median_s / 1e9 } : {}),
      ...(c.bytes ? { bytes: c.bytes, gbps: c.bytes / t.median_s / 1e9 } : {}),
      peak_bytes: peakBytes,
      ...(peer_s != null ? { peer: `${peer!.name} ${c.device.startsWith('cuda') ? 'cuda' : 'cpu'}`, peer_s, ratio: t.median_s / peer_s } : {}),
    });
  }
}

/** torch dtype name for an Imprint float dtype. */
export const torchDtype = (dtype: string): string => ({ f32: 'float32', f16: 'float16', bf16: 'bfloat16' })[dtype] ?? 'float32';
