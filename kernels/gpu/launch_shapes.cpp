// kernels/gpu/launch_shapes.cpp: launch shapes of prompt-tile attention and token sampling
// (launch_shapes.h).
#include "gpu/launch_shapes.h"

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

}  // namespace gptoss::gpu
