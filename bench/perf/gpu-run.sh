#!/usr/bin/env bash
# The runner benchmark on a GPU, as one command: bench:perf with onnxruntime's CUDA execution provider, written to
# its own section of bench/RESULTS.md (`bench:perf-gpu`) and copied to $OUT when that is set.
#
#   bash bench/perf/gpu-run.sh            # from the repository root
#
# Needs (checked first; the script stops with the fix instead of reporting CPU numbers as GPU ones):
# - an NVIDIA GPU with its driver (nvidia-smi), CUDA 12.x runtime libraries and cuDNN 9 on the loader path
#   (what onnxruntime-node 1.30's CUDA provider is built for; the runner image infra/runner-image has them);
# - Node 20+ and the repository's dependencies installed WITH the CUDA provider:
#     ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci      (downloads it from NuGet; the repo's .npmrc skips it otherwise)
# - about 12 GB of free disk for bench/.cache/perf (the generated encoder and its packages).
# On a machine without network access, carry node_modules (with the CUDA provider) and bench/.cache/perf built
# elsewhere; the first run otherwise generates the encoder and builds four packages (~10 min on 16 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "gpu-run: $*" >&2; exit 2; }
command -v nvidia-smi >/dev/null || fail "no nvidia-smi: no NVIDIA driver on this machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || fail "nvidia-smi cannot see a GPU"
command -v node >/dev/null || fail "no node on PATH (Node 20+ is needed)"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || fail "Node $(node -v) is too old; Node 20+ is needed"
ort=node_modules/onnxruntime-node/bin/napi-v6/linux/x64
[ -d "$ort" ] || fail "dependencies are not installed: run ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci"
[ -f "$ort/libonnxruntime_providers_cuda.so" ] && [ -f "$ort/libonnxruntime_providers_shared.so" ] \
  || fail "onnxruntime-node has no CUDA provider in $ort: reinstall with ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci"

mkdir -p bench/.cache/perf
echo "gpu-run: $(nproc) CPU cores, $(node -v), load $(cut -d' ' -f1 /proc/loadavg)"
# --provider cuda fails (exit 1) if onnxruntime falls back to the CPU, naming why.
node --import tsx bench/perf/main.ts --provider cuda --section bench:perf-gpu "$@" 2>&1 | tee bench/.cache/perf/gpu-run.log
if [ -n "${OUT:-}" ]; then
  cp bench/.cache/perf/last-run.md bench/.cache/perf/last-run.json bench/.cache/perf/gpu-run.log "$OUT"/
  cp bench/RESULTS.md "$OUT"/RESULTS.md
fi
