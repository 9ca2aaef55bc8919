#!/bin/bash
# pack.sh: copies the GPU programs of a CUDA build (and tokenizer.bin from the CPU build) into one
# git-ignored folder that a GPU-machine call carries (docs/gpu.md), stripped of symbols to keep the
# carried tree small. Usage: tests/gpu/pack.sh BUILD_DIR DEST [CPU_BUILD_DIR]
set -euo pipefail
B=$1 D=$2 C=${3:-build}
mkdir -p "$D"
for p in run bench-engine bench-kernels bench-moe check-top1 export-model gpu_kernels_test \
         gpu_engine_test gpu_moe_test gpu_sample_test gpu_attention_test gpu_decode_test \
         gpu_head_slice_test golden_test \
         launch_limits_test bench-serve comm_ipc_transport_test; do
  f=$(find "$B" -maxdepth 3 -type f -name "$p" -perm -u+x | head -1)
  [ -n "$f" ] && { cp "$f" "$D/$p"; strip "$D/$p" 2>/dev/null || true; }
done
[ -f "$C/tokenizer.bin" ] && cp "$C/tokenizer.bin" "$D/"
# The GPU machine has no cpp-httplib (the server's library, linked by `run`): carry it where
# run_on_gpu.sh looks when ldd finds a library missing (its mpi/lib).
if [ -x "$D/run" ]; then
  lib=$(ldd "$D/run" | awk '/libcpp-httplib/ {print $3}')
  [ -n "$lib" ] && { mkdir -p "$D/mpi/lib"; cp -L "$lib" "$D/mpi/lib/"; }
fi
du -sh "$D"; ls "$D"
