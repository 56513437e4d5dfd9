// The peer measured in the same run: PyTorch, when a Python with torch is
// installed (Debian: apt-get install python3-torch). Each case is a snippet:
// `setup` builds the inputs (with `torch`, `device` and `threads` in scope) and
// `run` is the expression timed, with the same median-of-runs method as ours.
import { spawnSync } from 'node:child_process';

export interface PeerCase {
  device: string;
  setup: string;
  run: string;
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
    try:
        scope = {"torch": torch, "F": torch.nn.functional, "device": c["device"], "threads": threads}
        exec(c["setup"], scope)
        out.append(timed(eval("lambda: " + c["run"], scope), c["device"]))
    except Exception as e:
        sys.stderr.write("peer case failed: %s\\n" % e)
        out.append(None)
print(json.dumps(out))
`;

/** Seconds per case (median), or null for a case the peer could not run. */
export function runPeer(peer: Peer, cases: PeerCase[], threads: number): (number | null)[] {
  const result = spawnSync(peer.python, ['-c', SCRIPT, String(threads)], { input: JSON.stringify(cases), encoding: 'utf8' });
  if (result.stderr) process.stderr.write(result.stderr);
  if (result.status !== 0) return cases.map(() => null);
  return JSON.parse(result.stdout) as (number | null)[];
}
