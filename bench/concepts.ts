// concepts suite: compressing Custom Diffusion concepts as saveConcept's
// `compress` does (truncatedSvd of each ΔW), timed with LAPACK (the addon's,
// in this process) and, as the peer, with lib's JavaScript linear algebra (a
// child process with IMPRINT_BLAS=none, bench/concepts-js-peer.ts). The whole
// SD1.5 concept takes the JavaScript routines about two minutes on 2 cores, so
// its peer runs only in the `concepts` suite; one [1280, 768] matrix always has its peer.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import type { Mat } from '../lib/concepts/linalg.js';
import { linalgBackend } from '../lib/concepts/linalg.js';
import { truncatedSvd } from '../lib/concepts/svd.js';
import { numThreads } from '../lib/index.js';
import { CONTEXT_WIDTH, lowRankPlusNoise, sd15KvDeltas } from './concept-deltas.js';
import { time } from './measure.js';

const RANK = 16;

export interface ConceptCase {
  name: string;
  params: Record<string, unknown>;
  matrices(): Mat[];
  step(matrices: Mat[]): void;
  timing: { warmup: number; minRuns: number; maxRuns: number };
  peerTiming: { warmup: number; minRuns: number; maxRuns: number };
  /** Whether the JavaScript peer runs in the broad suites too (else only in `concepts`). */
  peerAlways: boolean;
}

const compress = (matrices: Mat[]): void => {
  for (const x of matrices) truncatedSvd(x, { rank: RANK });
};

export const CONCEPT_CASES: ConceptCase[] = [
  {
    name: 'compress-sd15-kv',
    params: { matrices: '32: to_k, to_v of 16 cross-attention layers, [320|640|1280, 768]', data: 'rank 16 + 1% noise', rank: RANK },
    matrices: () => [...sd15KvDeltas().values()],
    step: compress,
    timing: { warmup: 1, minRuns: 3, maxRuns: 3 },
    peerTiming: { warmup: 0, minRuns: 1, maxRuns: 1 },
    peerAlways: false,
  },
  {
    name: 'compress-1280x768',
    params: { matrices: `1: [1280, ${CONTEXT_WIDTH}]`, data: 'rank 16 + 1% noise', rank: RANK },
    matrices: () => [lowRankPlusNoise(1280, CONTEXT_WIDTH, 7)],
    step: compress,
    timing: { warmup: 1, minRuns: 5, maxRuns: 20 },
    peerTiming: { warmup: 0, minRuns: 3, maxRuns: 3 },
    peerAlways: true,
  },
];

const PEER_NAME = 'imprint JavaScript linalg (IMPRINT_BLAS=none)';

function runPeer(name: string): { seconds: number; runs: number } | { error: string } {
  const script = fileURLToPath(new URL('./concepts-js-peer.ts', import.meta.url));
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, name], { env: { ...process.env, IMPRINT_BLAS: 'none' }, encoding: 'utf8' });
  if (r.status !== 0) return { error: r.stderr.trim() || `exit ${r.status}` };
  return JSON.parse(r.stdout.trim()) as { seconds: number; runs: number };
}

/** Runs the cases; `dedicated` (the `concepts` suite) adds the slow JavaScript peers. */
export async function runConceptCases(emit: (record: object) => void, dedicated: boolean): Promise<void> {
  const { backend, detail } = linalgBackend();
  for (const c of CONCEPT_CASES) {
    const matrices = c.matrices();
    const t = await time(async () => c.step(matrices), c.timing);
    const peer = dedicated || c.peerAlways ? runPeer(c.name) : null;
    emit({
      suite: 'concepts',
      name: c.name,
      params: { ...c.params, threads: numThreads(), linalg: backend, linalg_detail: detail },
      device: 'cpu',
      imprint_s: t.median_s,
      runs: t.runs,
      ...(peer && 'seconds' in peer ? { peer: PEER_NAME, peer_s: peer.seconds, peer_runs: peer.runs, ratio: t.median_s / peer.seconds } : {}),
      ...(peer && 'error' in peer ? { peer: PEER_NAME, peer_error: peer.error } : {}),
    });
  }
}
