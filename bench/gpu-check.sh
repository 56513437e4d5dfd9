#!/usr/bin/env bash
# The first check of the CUDA backend on a GPU: needs nvcc, CMake, a C++
# compiler and a GPU, but no Node.js and no network. Builds the native parity
# suite (every CUDA kernel against its CPU twin) for the GPU's architecture,
# runs it, then times every parity case on the GPU (JSON lines), and writes
# logs, the JSON lines and a summary into OUTDIR. Fits in ten minutes on a
# 16-core machine (the build is most of it).
#   bench/gpu-check.sh OUTDIR            (IMPRINT_CUDA_ARCHS=90 by default: H100/H200)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/gpu-check.sh OUTDIR}
mkdir -p "$out"
archs=${IMPRINT_CUDA_ARCHS:-90}
build=${IMPRINT_GPU_BUILD_DIR:-build-gpu}
start=$(date +%s)
log() { echo "[$(( $(date +%s) - start ))s] $*" | tee -a "$out/summary.txt"; }

log "gpu-check: archs $archs, build dir $build"
{ nvidia-smi || true; nvcc --version || true; cmake --version | head -1; } > "$out/machine.txt" 2>&1
command -v nvcc >/dev/null || PATH=/usr/local/cuda/bin:$PATH

log "configure"
if ! cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DIMPRINT_CUDA=on -DIMPRINT_CUDA_ARCHS="$archs" \
    -DIMPRINT_NATIVE_TESTS=ON > "$out/configure.log" 2>&1; then
  log "configure FAILED (see configure.log)"; tail -20 "$out/configure.log"; exit 1
fi
log "build imprint_parity"
if ! timeout 420 cmake --build "$build" -j "$(nproc)" --target imprint_parity > "$out/build.log" 2>&1; then
  log "build FAILED (see build.log)"; grep -m 20 -E "error|Error" "$out/build.log"; exit 1
fi

log "parity: every case on the CPU and on cuda:0, compared"
timeout 240 "$build/imprint_parity" > "$out/parity.log" 2>&1
parity_rc=$?
log "parity exit status $parity_rc (0: all passed; 77: no GPU)"
tail -3 "$out/parity.log" | tee -a "$out/summary.txt"
grep -E "FAIL" "$out/parity.log" | head -40 > "$out/parity-failures.txt" || true

log "bench: median GPU time of every parity case (JSON lines)"
timeout 180 "$build/imprint_parity" --bench > "$out/bench-native.jsonl" 2> "$out/bench-native.err"
bench_rc=$?
log "bench exit status $bench_rc, $(grep -c imprint_s "$out/bench-native.jsonl" 2>/dev/null || echo 0) cases timed, $(grep -c '"error"' "$out/bench-native.jsonl" 2>/dev/null || echo 0) errors"
log "done"
[ "$parity_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
