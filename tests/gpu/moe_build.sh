#!/bin/sh
# moe_build.sh: standalone build of the GPU MoE test and benchmark with nvcc (no CMake), for the
# GPU machine while the CMake wiring is in flux. Usage: tests/gpu/moe_build.sh [out_dir] [arch]
# Produces out_dir/moe_test (GoogleTest, static gtest) and out_dir/bench-moe.
set -e
cd "$(dirname "$0")/../.."
OUT=${1:-build-moe}
ARCH=${2:-sm_90}
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
mkdir -p "$OUT/obj"
CXXF="-std=c++20 -O2 -march=x86-64-v3 -fopenmp -Isrc -Ikernels -I/usr/local/cuda/include"
g++ $CXXF -ffp-contract=off -c kernels/cpu/ops.cpp -o "$OUT/obj/ops.o" &
g++ $CXXF -c src/common/error.cpp -o "$OUT/obj/error.o" &
g++ $CXXF -c tests/gpu/moe_test.cpp -o "$OUT/obj/moe_test.o" &
g++ $CXXF -c tests/gpu/moe_bench.cpp -o "$OUT/obj/moe_bench.o" &
$NVCC -std=c++20 -O3 -arch=$ARCH -lineinfo -Isrc -Ikernels -c kernels/gpu/moe.cu -o "$OUT/obj/moe.o"
wait
$NVCC -arch=$ARCH -o "$OUT/moe_test" "$OUT/obj/moe_test.o" "$OUT/obj/moe.o" "$OUT/obj/ops.o" \
  "$OUT/obj/error.o" /usr/lib/x86_64-linux-gnu/libgtest_main.a /usr/lib/x86_64-linux-gnu/libgtest.a \
  -Xcompiler -fopenmp -lpthread
$NVCC -arch=$ARCH -o "$OUT/bench-moe" "$OUT/obj/moe_bench.o" "$OUT/obj/moe.o" "$OUT/obj/ops.o" \
  "$OUT/obj/error.o" -Xcompiler -fopenmp -lpthread
echo "built $OUT/moe_test $OUT/bench-moe"
