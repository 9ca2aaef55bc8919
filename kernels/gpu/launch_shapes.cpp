// kernels/gpu/launch_shapes.cpp: launch shapes of the kernels outside the MoE with dynamic shared
// memory (launch_shapes.h).
#include "gpu/launch_shapes.h"

#include <algorithm>
#include <cstdio>

#include "common/error.h"

namespace gptoss::gpu {

size_t attn_tiles_smem_bytes(const GpuTarget& t, bool f32_cache) {
  if (t.wave_size == 64) return f32_cache ? AttnTilesSmem<64, true>::bytes : AttnTilesSmem<64, false>::bytes;
  return f32_cache ? AttnTilesSmem<32, true>::bytes : AttnTilesSmem<32, false>::bytes;
}

KernelLaunch attn_tiles_launch(const GpuTarget& t, bool f32_cache, int max_tiles, int n_heads,
                               int n_kv_heads) {
  const int m = t.wave_size == 64 ? AttnTilesDims<64>::m : AttnTilesDims<32>::m;
  const int threads = t.wave_size == 64 ? AttnTilesDims<64>::threads : AttnTilesDims<32>::threads;
  const int G = n_heads / n_kv_heads;
  KernelLaunch l;
  l.kernel = f32_cache ? "f32_kv_attention_tiles_kernel<float>"
                       : "f32_kv_attention_tiles_kernel<unsigned short>";
  l.grid_x = max_tiles;
  l.grid_y = n_kv_heads;
  l.grid_z = (kAttnTileRows * G + m - 1) / m;
  l.threads = threads;
  l.dyn_smem_bytes = attn_tiles_smem_bytes(t, f32_cache);
  return l;
}

size_t pick_sample_smem_bytes(const GpuTarget& t, int vocab) {
  const long long chunk = static_cast<long long>(kPickChunkPerLane) * t.wave_size;
  const long long chunks = (vocab + chunk - 1) / chunk;
  const long long c_bytes = (chunks + chunk) * 8;
  const long long sort_bytes = static_cast<long long>(kPickGather) * 8 + kPickMaxTopK * 8;
  return static_cast<size_t>(c_bytes > sort_bytes ? c_bytes : sort_bytes);
}

KernelLaunch pick_sample_launch(const GpuTarget& t, int rows, int vocab) {
  KernelLaunch l;
  l.kernel = "pick_sample_kernel";
  l.grid_x = rows;
  l.threads = kPickThreads;
  l.dyn_smem_bytes = pick_sample_smem_bytes(t, vocab);
  l.static_smem_bytes = kPickSampleStaticSmemBytes;
  return l;
}

int decode_rows_per_launch(const GpuTarget& t, int rows, int K) {
  const size_t limit = t.max_smem_per_block - kDecodeStaticSmemBytes;
  return size_t(decode_row_bucket(rows)) * K * sizeof(float) <= limit ? rows : 2;
}

KernelLaunch decode_matmul_launch(const GpuTarget& t, int rows, int K, int M, bool rope,
                                  int sm_count) {
  const int bucket = decode_row_bucket(rows);
  const int wr = K <= kDecodeSmallK ? 2 : 1;  // weight rows per wave (a RoPE pair for qkv)
  const int groups = (M + wr - 1) / wr, waves = kDecodeThreads / t.wave_size;
  static char names[2][3][2][64];  // "matmul_decode_kernel<R, WR, NC, (Epi)E>" by (rope, bucket, wr)
  char* name = names[rope][bucket == 1 ? 0 : bucket == 2 ? 1 : 2][wr - 1];
  // The name as the compilers demangle it (the resource report's key).
  std::snprintf(name, 64, "matmul_decode_kernel<%d, %d, %d, (gptoss::gpu::Epi)%d>", bucket, wr,
                (wr == 2 ? kDecodeSmallK : kDecodeMaxK) / 8 / t.wave_size, rope ? 1 : 0);
  KernelLaunch l;
  l.kernel = name;
  // Resident blocks per SM (NVIDIA: one row's kernel is held to 128 registers, two blocks per SM;
  // more rows take more registers, one block): a grid of more would start a second round of
  // blocks with their own staging; waves loop over the groups instead.
  const int per_sm = t.vendor == GpuVendor::nvidia ? (bucket == 1 ? 2 : 1) : 2;
  l.grid_x = std::max(1, std::min((groups + waves - 1) / waves, per_sm * sm_count));
  l.threads = kDecodeThreads;
  l.dyn_smem_bytes = size_t(bucket) * K * sizeof(float);
  l.static_smem_bytes = kDecodeStaticSmemBytes;
  return l;
}

KernelLaunch moe_decode_route_launch(const GpuTarget& t, int rows, int H, int E) {
  const int bucket = decode_row_bucket(rows), waves = kDecodeThreads / t.wave_size;
  static char names[3][40];
  char* name = names[bucket == 1 ? 0 : bucket == 2 ? 1 : 2];
  std::snprintf(name, 40, "moe_route_decode_kernel<%d>", bucket);
  KernelLaunch l;
  l.kernel = name;
  l.grid_x = (E + 2 * waves - 1) / (2 * waves);
  l.threads = kDecodeThreads;
  l.dyn_smem_bytes = std::max(size_t(bucket) * H, size_t(rows) * E) * sizeof(float);
  l.static_smem_bytes = kDecodeStaticSmemBytes;
  return l;
}

KernelLaunch moe_decode_mlp_launch(const GpuTarget& t, bool first, int rows, int pairs, int K, int M) {
  KernelLaunch l;
  l.grid_x = pairs;
  if (t.vendor == GpuVendor::nvidia) {  // warps of 16 rows x K parts: input hi|lo, scales, cp.async ring
    const bool wide = moe_decode_wide(rows);
    const MoeDecodeShape s = first ? (wide ? kMoeDecodeWide1 : kMoeDecodeNarrow1)
                                   : (wide ? kMoeDecodeWide2 : kMoeDecodeNarrow2);
    const int warps = s.groups * s.split;
    static char names[2][2][64];  // "moe_mlp_decode_kernel<first, groups, split, stage blocks, stages>"
    char* name = names[first][wide];
    std::snprintf(name, sizeof(names[0][0]), "moe_mlp_decode_kernel<%s, %d, %d, %d, %d>",
                  first ? "true" : "false", s.groups, s.split, s.stage_blocks, s.stages);
    l.kernel = name;
    l.grid_y = M / (16 * s.groups);
    l.threads = warps * t.wave_size;
    l.dyn_smem_bytes = moe_decode_smem_bytes(s, K);
  } else {  // 4 waves of 16 rows, the input in fp32
    l.kernel = first ? "moe_mlp_decode_kernel<true>" : "moe_mlp_decode_kernel<false>";
    l.grid_y = M / kMoeDecodeTileM;
    l.threads = (kMoeDecodeTileM / 16) * t.wave_size;
    l.dyn_smem_bytes = size_t(K) * sizeof(float);
  }
  l.static_smem_bytes = kDecodeStaticSmemBytes;
  return l;
}

std::string moe_decode_limits_error(const GpuTarget& t, int max_rows, int H, int I, int E, int k) {
  for (int rows = 1; rows <= std::min(max_rows, kDecodeMaxRows); ++rows) {
    const int pairs = rows * k;
    for (const KernelLaunch& l : {moe_decode_route_launch(t, rows, H, E),
                                  moe_decode_mlp_launch(t, true, rows, pairs, H, 2 * I),
                                  moe_decode_mlp_launch(t, false, rows, pairs, I, H)}) {
      const std::string err = launch_limit_error(l, t);
      if (!err.empty())
        return strfmt("moe decode: a step of %d row%s: %s", rows, rows == 1 ? "" : "s", err.c_str());
    }
  }
  return "";
}

int fast_gemm_auto_splits(int K, int M, int sm_count) {
  const long tiles = 2L * ((M + 127) / 128);
  long s = (2L * sm_count + tiles - 1) / tiles;
  s = std::min<long>({s, 4L, static_cast<long>(K / kFastGemmBK) / 16});
  return static_cast<int>(std::max<long>(s, 1));
}

GemmTile fast_gemm_tile(int rows, int M, int splits, int sm_count) {
  const long want = 2L * sm_count;
  auto blocks = [&](int bm, int bn) {
    return long((rows + bm - 1) / bm) * ((M + bn - 1) / bn) * splits;
  };
  if (blocks(128, 128) >= want) return {128, 128};
  if (blocks(64, 128) >= want) return {64, 128};
  return {64, 64};
}

KernelLaunch fast_gemm_launch(const GpuTarget& t, GemmTile tile, int rows, int M, int splits) {
  (void)t;
  KernelLaunch l;
  // The names as the compilers demangle them (one per instantiated tile).
  l.kernel = tile.bm == 128 ? "bf16_bf16w_gemm_kernel<128, 128>"
             : tile.bn == 128 ? "bf16_bf16w_gemm_kernel<64, 128>"
                              : "bf16_bf16w_gemm_kernel<64, 64>";
  l.grid_x = (rows + tile.bm - 1) / tile.bm;
  l.grid_y = (M + tile.bn - 1) / tile.bn;
  l.grid_z = splits;
  l.threads = kFastGemmThreads;
  l.dyn_smem_bytes = fast_gemm_smem_bytes(tile.bm, tile.bn);
  return l;
}

GemmTile wgmma_gemm_tile(int rows, int M, int sm_count) {
  const long sms = sm_count;
  auto blocks = [&](int bm, int bn) { return long((rows + bm - 1) / bm) * ((M + bn - 1) / bn); };
  if (rows <= 64) return blocks(64, 128) >= sms ? GemmTile{64, 128} : GemmTile{64, 64};
  if (blocks(128, 256) >= 4 * sms) return {128, 256};
  if (blocks(128, 128) >= sms) return {128, 128};
  return {128, 64};
}

KernelLaunch wgmma_gemm_launch(const GpuTarget& t, GemmTile tile, int rows, int M) {
  (void)t;
  KernelLaunch l;
  const bool two = tile.bm == 128;
  l.kernel = !two ? (tile.bn == 128 ? "bf16_wgmma_gemm_kernel<1, 128, 4>" : "bf16_wgmma_gemm_kernel<1, 64, 4>")
             : tile.bn == 256 ? "bf16_wgmma_gemm_kernel<2, 256, 4>"
             : tile.bn == 128 ? "bf16_wgmma_gemm_kernel<2, 128, 4>"
                              : "bf16_wgmma_gemm_kernel<2, 64, 4>";
  l.grid_x = (rows + tile.bm - 1) / tile.bm;
  l.grid_y = (M + tile.bn - 1) / tile.bn;
  l.threads = 128 * (tile.bm / 64);
  l.dyn_smem_bytes = wgmma_gemm_smem_bytes(tile.bm, tile.bn);
  return l;
}

int attn_split_chunk(int launch_rows, int n_kv_heads, int max_keys, int kv_chunk) {
  while (kv_chunk * 2 <= kAttnMaxChunk &&
         long(n_kv_heads) * attn_split_pieces(max_keys, kv_chunk * 2) * launch_rows >= kAttnMinBlocks)
    kv_chunk *= 2;
  return kv_chunk;
}

KernelLaunch attn_partial_mma_launch(const GpuTarget& t, int launch_rows, int n_kv_heads, int pieces) {
  KernelLaunch l;
  l.kernel = "bf16kv_attention_partial_mma_kernel";
  l.grid_x = n_kv_heads;
  l.grid_y = pieces;
  l.grid_z = launch_rows;
  l.threads = kAttnMmaWarps * t.wave_size;
  l.dyn_smem_bytes = kAttnMmaSmemBytes;
  l.static_smem_bytes = kAttnMergeStaticSmemBytes;
  return l;
}

}  // namespace gptoss::gpu
