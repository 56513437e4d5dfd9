// The peer measured in the same run: PyTorch, when a Python with torch is
// installed (Debian: apt-get install python3-torch). It times the same cases
// with the same thread count and the same median-of-runs method.
import { spawnSync } from 'node:child_process';

export interface PeerCase {
  kind: 'matmul';
  a: number[];
  b: number[];
  transposeB?: boolean;
  dtype: string;
  device: string;
}

export interface Peer {
  name: string;
  python: string;
}

export function findPeer(): Peer | null {
  const candidates = [process.env.IMPRINT_PEER_PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean) as string[];
  for (const python of candidates) {
    const probe = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (probe.status === 0) return { name: `pytorch ${probe.stdout.trim()}`, python };
  }
  return null;
}

const SCRIPT = `
import json, sys, time, torch
cases, threads = json.loads(sys.stdin.read()), int(sys.argv[1])
torch.set_num_threads(threads)
dtypes = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
def timed(fn, device, warmup=2, min_runs=5, max_runs=50, min_seconds=1.0):
    sync = (lambda: torch.cuda.synchronize()) if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup): fn(); sync()
    samples, start = [], time.perf_counter()
    while len(samples) < min_runs or (len(samples) < max_runs and time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter(); fn(); sync(); samples.append(time.perf_counter() - t0)
    samples.sort()
    return samples[len(samples) // 2]
out = []
for c in cases:
    dev = c["device"]
    a = torch.randn(c["a"], dtype=dtypes[c["dtype"]], device=dev)
    b = torch.randn(c["b"], dtype=dtypes[c["dtype"]], device=dev)
    if c.get("transposeB"): fn = lambda: torch.matmul(a, b.transpose(-1, -2))
    else: fn = lambda: torch.matmul(a, b)
    out.append(timed(fn, dev))
print(json.dumps(out))
`;

/** Seconds per case (median), or null for a case the peer could not run. */
export function runPeer(peer: Peer, cases: PeerCase[], threads: number): (number | null)[] {
  const result = spawnSync(peer.python, ['-c', SCRIPT, String(threads)], { input: JSON.stringify(cases), encoding: 'utf8' });
  if (result.status !== 0) {
    process.stderr.write(`bench: ${peer.name} failed: ${result.stderr.split('\n').slice(-3).join(' ')}\n`);
    return cases.map(() => null);
  }
  return JSON.parse(result.stdout) as number[];
}
