// Timing helpers shared by the bench suites: warm up, then repeat until enough
// runs or time have passed, and report the median.

export interface Timing {
  median_s: number;
  runs: number;
}

export async function time(fn: () => Promise<unknown>, options: { warmup?: number; minRuns?: number; maxRuns?: number; minSeconds?: number } = {}): Promise<Timing> {
  const { warmup = 2, minRuns = 5, maxRuns = 50, minSeconds = 1 } = options;
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  const start = performance.now();
  while (samples.length < minRuns || (samples.length < maxRuns && (performance.now() - start) / 1000 < minSeconds)) {
    const t0 = performance.now();
    await fn();
    samples.push((performance.now() - t0) / 1000);
  }
  samples.sort((a, b) => a - b);
  return { median_s: samples[Math.floor(samples.length / 2)], runs: samples.length };
}
