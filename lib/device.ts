// What this machine offers (CPU threads and SIMD, CUDA devices or why there
// are none) and the memory Imprint holds on each device.
import type { NativeBuildInfo, NativeDevices, NativeMemoryStats } from '../typings/native.js';
import { ImprintError, invalidArgument } from './errors.js';
import { native } from './native.js';
import { collectedWithoutDispose } from './tensor.js';
import { checkDevice, type Device } from './validate.js';

export type DevicesInfo = NativeDevices;
export type BuildInfo = NativeBuildInfo;
export interface MemoryStats extends NativeMemoryStats {
  /** Tensors freed by the garbage collector because nobody called dispose(). */
  collectedWithoutDispose: number;
}

/**
 * @example const { cpu, cuda } = devices();
 * if (!cuda.available) console.log(`CPU only: ${cuda.reason}`);
 */
export function devices(): DevicesInfo {
  return native.devices();
}

/** The best device here: 'cuda:0' when a GPU is usable, else 'cpu'. */
export function defaultDevice(): string {
  return native.devices().cuda.available ? 'cuda:0' : 'cpu';
}

/**
 * A device option checked before any work: 'cpu', 'cuda' or 'cuda:N' that
 * exists here. A CUDA device on a build or machine without one is refused
 * with devices()' reason (CUDA_NOT_BUILT / CUDA_UNAVAILABLE).
 */
export function checkUsableDevice(fn: string, device: unknown): Device {
  const d = checkDevice(fn, device) as Device;
  if (d === 'cpu') return d;
  const cuda = devices().cuda;
  if (!cuda.built) throw new ImprintError(`${fn}: device '${d}' is not usable: ${cuda.reason ?? 'this build of Imprint has no CUDA'}`, 'CUDA_NOT_BUILT');
  if (!cuda.available) throw new ImprintError(`${fn}: device '${d}' is not usable: ${cuda.reason ?? 'no usable GPU'}`, 'CUDA_UNAVAILABLE');
  const index = Number(d.slice('cuda:'.length));
  if (index >= cuda.devices.length) {
    const have = cuda.devices.map((g) => `${g.device} (${g.name})`).join(', ');
    throw invalidArgument(`${fn}: device '${d}' does not exist; this machine has ${cuda.devices.length} GPU${cuda.devices.length === 1 ? '' : 's'}: ${have}`);
  }
  return d;
}

export function buildInfo(): BuildInfo {
  return native.buildInfo();
}

/** Bytes live and peak that Imprint holds on a device, and what the device has free. */
export function memoryStats(device = 'cpu'): MemoryStats {
  const d = checkDevice('memoryStats', device);
  return { ...native.memoryStats(d), collectedWithoutDispose: collectedWithoutDispose(d) };
}

/** Returns the blocks Imprint keeps for reuse (memoryStats().cachedBytes) to the system. */
export function emptyCache(device = 'cpu'): void {
  native.emptyCache(checkDevice('emptyCache', device));
}

export function resetPeakMemory(device = 'cpu'): void {
  native.resetPeakMemory(checkDevice('resetPeakMemory', device));
}

/** Caps the bytes Imprint may hold on a device; allocations past it fail with OUT_OF_MEMORY. 0 removes the cap. */
export function setMemoryLimit(device: string, bytes: number): void {
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw invalidArgument(`setMemoryLimit: bytes must be a non-negative integer, got ${bytes}`);
  }
  native.setMemoryLimit(checkDevice('setMemoryLimit', device), bytes);
}

/** Threads of the CPU pool (IMPRINT_NUM_THREADS, default: all cores). */
export function numThreads(): number {
  return native.numThreads();
}

export function setNumThreads(threads: number): void {
  if (!Number.isInteger(threads) || threads < 1 || threads > 1024) {
    throw invalidArgument(`setNumThreads: threads must be an integer from 1 to 1024, got ${threads}`);
  }
  native.setNumThreads(threads);
}
