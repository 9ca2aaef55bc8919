// attention_test.cu (tests/gpu): the prompt-tile flash-attention kernels of kernels/gpu/ops.h
// (f32_bf16kv_attention_sinks_tiles, f32_f32kv_attention_sinks_tiles) against the CPU twin
// cpu::f32_attention_sinks_head, row by row, on random inputs (outputs poisoned: 0xff bytes = NaN).
// Cases: tiles of 1, 7, 37 and 64 rows from different slots in one launch; full attention and a
// sliding window of 128 over a ring of window + 512 (positions crossing the window, the ring
// wraparound, positions up to 131071); GQA 64/8 and 8/2; bf16 and fp32 caches; *n_tiles <
// max_tiles (the unused tile entries point at rows that must stay untouched, as must every row
// outside the tiles); a captured graph replayed with another *n_tiles; the full-attention cases
// again from a paged pool (kernels/gpu/ops.h KvPages), bit-equal to the ring.
// Bound: 1e-5 rel L2 per row over all its heads, as the split-K test in kernels_test.cu. The
// tensor-core scores take Q as bf16 hi + mid + lo (2^-24 relative; bf16 K exact, fp32 K also in
// three parts), P V takes P (and an fp32 V) as bf16 hi + lo (2^-16 relative per weight, averaging
// out), fp32 accumulation in another order, the division by the sum at the end instead of per
// probability. A CPU emulation of the kernel against fp64 on these cases: worst 2.8e-6 (bf16
// cache) and 4.0e-6 (fp32 cache); with Q in two parts it was 7.6e-6 / 1.7e-5 (the sharp rows'
// large logits amplify the score error), which this bound would catch for the fp32 cache.
// Timing (printed, not asserted): one 512-row prompt chunk at positions 3584..4095 (full
// attention, 64/8 heads, bf16 cache) through the tile kernel vs the split-K kernel.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "cpu/ops.h"
#include "gpu_test_util.h"

namespace gptoss {
namespace {
using gputest::DevBuf;
using gputest::rel_l2;
using gputest::Rng;

constexpr int kHd = 64;

struct TileSpec {
  int slot, pos0, n;
};

struct Case {
  const char* name;
  int nh, nkv, cap, window, slots;
  std::vector<TileSpec> tiles;
};

// One step: the tiles' rows, with a loose row (not in any tile, e.g. a decode row) before each
// tile and one at the end. Returns the device results of the tile kernel and checks them.
void run_case(const Case& c, bool f32_cache, uint64_t seed) {
  Rng r(seed);
  const int R = (c.nh + 2 * c.nkv) * kHd;
  std::vector<int32_t> pos, slot;
  std::vector<gpu::AttnTile> tiles;
  std::vector<int> loose;
  for (const TileSpec& t : c.tiles) {
    loose.push_back(int(pos.size()));
    pos.push_back(3), slot.push_back(t.slot);
    tiles.push_back({int32_t(pos.size()), t.n});
    for (int i = 0; i < t.n; ++i) pos.push_back(t.pos0 + i), slot.push_back(t.slot);
  }
  loose.push_back(int(pos.size()));
  pos.push_back(5), slot.push_back(0);
  const int rows = int(pos.size());
  const int n_tiles = int(tiles.size());
  // Unused entries past *n_tiles: they name the loose rows, which must stay poisoned.
  tiles.push_back({int32_t(loose[0]), 1});
  tiles.push_back({int32_t(loose.back()), 1});
  const int max_tiles = int(tiles.size());

  const size_t cache_n = size_t(c.slots) * c.cap * c.nkv * kHd;
  std::vector<float> kf, vf;
  std::vector<bf16_t> kb, vb;
  if (f32_cache) {
    kf = r.normals(cache_n, 1.0f), vf = r.normals(cache_n, 1.0f);
  } else {
    kb = r.bf16s(cache_n, 1.0f), vb = r.bf16s(cache_n, 1.0f);
    kf.resize(cache_n), vf.resize(cache_n);
    for (size_t i = 0; i < cache_n; ++i) kf[i] = bf16_to_f32(kb[i]), vf[i] = bf16_to_f32(vb[i]);
  }
  auto sinks = r.bf16s(c.nh, 1.0f);
  // Queries: some rows sharp (|s| up to ~10: the running max moves), most flat.
  std::vector<float> qkv(size_t(rows) * R);
  for (int n = 0; n < rows; ++n) {
    const float qs = n % 3 == 0 ? 3.0f : 0.7f;
    for (int e = 0; e < R; ++e) qkv[size_t(n) * R + e] = r.normal(qs);
  }

  DevBuf<float> dq(qkv), dout(size_t(rows) * c.nh * kHd);
  DevBuf<bf16_t> ds(sinks);
  DevBuf<int32_t> dp(pos), dsl(slot), dnt(std::vector<int32_t>{n_tiles});
  DevBuf<gpu::AttnTile> dt(tiles);
  if (f32_cache) {
    DevBuf<float> dk(kf), dv(vf);
    gpu::f32_f32kv_attention_sinks_tiles(dq.p, dk.p, dv.p, ds.p, dp.p, dsl.p, dt.p, dnt.p,
                                         max_tiles, c.nh, c.nkv, kHd, c.cap, {}, c.window,
                                         dout.p, nullptr);
    GPU_CHECK(gpuDeviceSynchronize());
  } else {
    DevBuf<bf16_t> dk(kb), dv(vb);
    gpu::f32_bf16kv_attention_sinks_tiles(dq.p, dk.p, dv.p, ds.p, dp.p, dsl.p, dt.p, dnt.p,
                                          max_tiles, c.nh, c.nkv, kHd, c.cap, {}, c.window,
                                          dout.p, nullptr);
    GPU_CHECK(gpuDeviceSynchronize());
  }
  auto g = dout.download();
  if (c.window == 0) {
    // Paged (a full layer of a paged cache, cap = ctx): the keys moved into a pool of blocks of 32
    // positions through a shuffled table, every other pool row NaN: the same bits as the ring.
    gputest::PagedLayout pl(c.slots, c.cap, 5, 4, r);
    DevBuf<int32_t> dtab(pl.table);
    DevBuf<float> dout_p(g.size());
    const size_t re = size_t(c.nkv) * kHd;
    if (f32_cache) {
      DevBuf<float> pk(pl.to_pool(kf, re, NAN)), pv(pl.to_pool(vf, re, NAN));
      gpu::f32_f32kv_attention_sinks_tiles(dq.p, pk.p, pv.p, ds.p, dp.p, dsl.p, dt.p, dnt.p,
                                           max_tiles, c.nh, c.nkv, kHd, c.cap, pl.pages(dtab.p),
                                           0, dout_p.p, nullptr);
      GPU_CHECK(gpuDeviceSynchronize());
    } else {
      DevBuf<bf16_t> pk(pl.to_pool(kb, re, bf16_t(0xffff))), pv(pl.to_pool(vb, re, bf16_t(0xffff)));
      gpu::f32_bf16kv_attention_sinks_tiles(dq.p, pk.p, pv.p, ds.p, dp.p, dsl.p, dt.p, dnt.p,
                                            max_tiles, c.nh, c.nkv, kHd, c.cap, pl.pages(dtab.p),
                                            0, dout_p.p, nullptr);
      GPU_CHECK(gpuDeviceSynchronize());
    }
    EXPECT_EQ(0, std::memcmp(dout_p.download().data(), g.data(), g.size() * sizeof(float)))
        << c.name << (f32_cache ? " f32 KV" : " bf16 KV") << ": paged differs from the ring";
  }

  const size_t orow = size_t(c.nh) * kHd;
  int max_pos = 0;
  for (int p : pos) max_pos = std::max(max_pos, p);
  std::vector<float> ref(orow), scratch(max_pos + 1);
  double worst = 0;
  for (int t = 0; t < n_tiles; ++t) {
    for (int i = 0; i < tiles[t].n_rows; ++i) {
      const int n = tiles[t].row0 + i;
      const size_t so = size_t(slot[n]) * c.cap * c.nkv * kHd;
      for (int h = 0; h < c.nh; ++h)
        cpu::f32_attention_sinks_head(qkv.data() + size_t(n) * R + size_t(h) * kHd,
                                      kf.data() + so, vf.data() + so, c.cap, c.nkv, kHd,
                                      cpu::gqa_kv_head(h, c.nh, c.nkv), pos[n], c.window,
                                      bf16_to_f32(sinks[h]), ref.data() + size_t(h) * kHd,
                                      scratch.data());
      const double e = rel_l2(g.data() + size_t(n) * orow, ref.data(), orow);
      worst = std::max(worst, e);
      EXPECT_LE(e, 1e-5) << c.name << (f32_cache ? " f32 KV" : " bf16 KV") << " tile " << t
                         << " row " << i << " pos " << pos[n] << " slot " << slot[n];
    }
  }
  for (int n : loose) {
    uint32_t bad = 0;
    for (size_t e = 0; e < orow; ++e) {
      uint32_t bits;
      std::memcpy(&bits, &g[size_t(n) * orow + e], 4);
      bad += bits != 0xffffffffu;
    }
    EXPECT_EQ(bad, 0u) << c.name << ": row " << n << " is in no tile but was written";
  }
  std::printf("[ attention tiles ] %-28s %s KV: %d tiles, %d rows, worst rel L2 %.2e\n", c.name,
              f32_cache ? "f32 " : "bf16", n_tiles, rows - int(loose.size()), worst);
}

std::vector<Case> cases() {
  std::vector<Case> v;
  for (auto [nh, nkv] : {std::pair{64, 8}, std::pair{8, 2}}) {
    // Full attention: cap = ctx. Two consecutive tiles of one sequence (slot 0), others alone.
    v.push_back({nh == 64 ? "full 64/8" : "full 8/2", nh, nkv, 700, 0, 3,
                 {{1, 0, 1}, {0, 1, 64}, {0, 65, 37}, {2, 100, 7}, {1, 636, 64}, {2, 699, 1}}});
    // Sliding window 128, ring of window + 512 = 640: the first keys, the window boundary
    // (pos 100..163), the ring wraparound (610..673, 1270..1276), and late positions.
    v.push_back({nh == 64 ? "window 64/8" : "window 8/2", nh, nkv, 640, 128, 3,
                 {{0, 0, 64},
                  {1, 100, 64},
                  {2, 610, 64},
                  {0, 1270, 7},
                  {1, 5000, 1},
                  {2, 131008, 64}}});
  }
  return v;
}

TEST(GpuAttentionTiles, bf16_cache) {
  GPU_TEST_REQUIRE_DEVICE();
  uint64_t seed = 11;
  for (const Case& c : cases()) run_case(c, false, seed++);
}

TEST(GpuAttentionTiles, f32_cache) {
  GPU_TEST_REQUIRE_DEVICE();
  uint64_t seed = 31;
  for (const Case& c : cases()) run_case(c, true, seed++);
}

// The launch captured once as a graph and replayed with another *n_tiles gives what a direct launch
// gives (bitwise), and *n_tiles = 0 writes nothing.
TEST(GpuAttentionTiles, graph_replay_n_tiles) {
  GPU_TEST_REQUIRE_DEVICE();
  Rng r(51);
  const int nh = 64, nkv = 8, cap = 300, R = (nh + 2 * nkv) * kHd, rows = 64 + 20;
  auto kc = r.bf16s(size_t(2) * cap * nkv * kHd), vc = r.bf16s(size_t(2) * cap * nkv * kHd);
  auto sinks = r.bf16s(nh);
  auto qkv = r.normals(size_t(rows) * R, 1.0f);
  std::vector<int32_t> pos(rows), slot(rows);
  for (int n = 0; n < 64; ++n) pos[n] = 200 + n, slot[n] = 0;
  for (int n = 64; n < rows; ++n) pos[n] = 10 + n, slot[n] = 1;
  std::vector<gpu::AttnTile> tiles = {{0, 64}, {64, 20}};
  DevBuf<float> dq(qkv), d_direct(size_t(rows) * nh * kHd), d_graph(size_t(rows) * nh * kHd);
  DevBuf<bf16_t> dk(kc), dv(vc), ds(sinks);
  DevBuf<int32_t> dp(pos), dsl(slot), dnt(std::vector<int32_t>{2});
  DevBuf<gpu::AttnTile> dt(tiles);
  gpu::f32_bf16kv_attention_sinks_tiles(dq.p, dk.p, dv.p, ds.p, dp.p, dsl.p, dt.p, dnt.p, 2, nh,
                                        nkv, kHd, cap, {}, 0, d_direct.p, nullptr);
  auto direct = d_direct.download();

  // The uploads and the poisoning go through the legacy stream, which a non-blocking stream does
  // not wait for: synchronise the device before each graph launch.
  GPU_CHECK(gpuDeviceSynchronize());
  gpuStream_t s;
  GPU_CHECK(gpuStreamCreateNonBlocking(&s));
  gpuGraph_t graph;
  gpuGraphExec_t exec;
  GPU_CHECK(gpuStreamBeginCapture(s));
  gpu::f32_bf16kv_attention_sinks_tiles(dq.p, dk.p, dv.p, ds.p, dp.p, dsl.p, dt.p, dnt.p, 2, nh,
                                        nkv, kHd, cap, {}, 0, d_graph.p, s);
  GPU_CHECK(gpuStreamEndCapture(s, &graph));
  GPU_CHECK(gpuGraphInstantiate(&exec, graph));
  dnt.upload({0});
  GPU_CHECK(gpuDeviceSynchronize());
  GPU_CHECK(gpuGraphLaunch(exec, s));
  GPU_CHECK(gpuStreamSynchronize(s));
  auto none = d_graph.download();
  size_t written = 0;
  for (float x : none) written += !std::isnan(x);
  EXPECT_EQ(written, 0u) << "*n_tiles = 0 must write nothing";
  dnt.upload({1});  // first tile only
  GPU_CHECK(gpuDeviceSynchronize());
  GPU_CHECK(gpuGraphLaunch(exec, s));
  GPU_CHECK(gpuStreamSynchronize(s));
  auto one = d_graph.download();
  const size_t split = size_t(64) * nh * kHd;
  EXPECT_EQ(0, std::memcmp(one.data(), direct.data(), split * 4));
  written = 0;
  for (size_t i = split; i < one.size(); ++i) written += !std::isnan(one[i]);
  EXPECT_EQ(written, 0u) << "tile 1 is past *n_tiles = 1";
  dnt.upload({2});
  GPU_CHECK(gpuDeviceSynchronize());
  GPU_CHECK(gpuGraphLaunch(exec, s));
  GPU_CHECK(gpuStreamSynchronize(s));
  auto both = d_graph.download();
  EXPECT_EQ(0, std::memcmp(both.data(), direct.data(), both.size() * 4));
  GPU_CHECK(gpuGraphExecDestroy(exec));
  GPU_CHECK(gpuGraphDestroy(graph));
  GPU_CHECK(gpuStreamDestroy(s));
}

// 512 rows at positions 3584..4095 of one sequence, full attention, 64/8 heads, bf16 cache of
// 4096 positions: the tile kernel (8 tiles of 64 rows) vs the split-K kernel on the same rows
// (kv_chunk as the engine picks for ctx 4096). Timing printed; both checked against the CPU on a
// few rows and against each other on all rows.
TEST(GpuAttentionTiles, timing_prompt_chunk_512) {
  GPU_TEST_REQUIRE_DEVICE();
  Rng r(71);
  const int nh = 64, nkv = 8, cap = 4096, R = (nh + 2 * nkv) * kHd, rows = 512, p0 = 3584;
  auto kc = r.bf16s(size_t(cap) * nkv * kHd), vc = r.bf16s(size_t(cap) * nkv * kHd);
  auto sinks = r.bf16s(nh);
  auto qkv = r.normals(size_t(rows) * R, 1.0f);
  std::vector<int32_t> pos(rows), slot(rows, 0);
  for (int n = 0; n < rows; ++n) pos[n] = p0 + n;
  std::vector<gpu::AttnTile> tiles;
  for (int t = 0; t < rows; t += gpu::kAttnTileRows)
    tiles.push_back({t, std::min(gpu::kAttnTileRows, rows - t)});
  const int n_tiles = int(tiles.size());
  const int kv_chunk = std::max(128, ((cap + 31) / 32 + 63) / 64 * 64);
  DevBuf<float> dq(qkv), d_tiles(size_t(rows) * nh * kHd), d_split(size_t(rows) * nh * kHd);
  DevBuf<float> dpart(gpu::attention_partial_floats(nh, cap, kv_chunk));
  dpart.zero();  // the merge's tickets start at 0 (ops.h)
  DevBuf<bf16_t> dk(kc), dv(vc), ds(sinks);
  DevBuf<int32_t> dp(pos), dsl(slot), dnt(std::vector<int32_t>{n_tiles});
  DevBuf<gpu::AttnTile> dt(tiles);
  auto run_tiles = [&] {
    gpu::f32_bf16kv_attention_sinks_tiles(dq.p, dk.p, dv.p, ds.p, dp.p, dsl.p, dt.p, dnt.p,
                                          n_tiles, nh, nkv, kHd, cap, {}, 0, d_tiles.p, nullptr);
  };
  auto run_split = [&] {
    gpu::f32_bf16kv_attention_sinks(dq.p, dk.p, dv.p, ds.p, dp.p, dsl.p, rows, nh, nkv, kHd, cap,
                                    {}, 0, cap, kv_chunk, dpart.p, d_split.p, nullptr);
  };
  auto time_us = [&](auto&& fn) {
    for (int i = 0; i < 3; ++i) fn();
    gpuEvent_t a, b;
    GPU_CHECK(gpuEventCreate(&a));
    GPU_CHECK(gpuEventCreate(&b));
    std::vector<float> t;
    for (int i = 0; i < 20; ++i) {
      GPU_CHECK(gpuEventRecord(a, nullptr));
      fn();
      GPU_CHECK(gpuEventRecord(b, nullptr));
      GPU_CHECK(gpuEventSynchronize(b));
      float ms = 0;
      GPU_CHECK(gpuEventElapsedTime(&ms, a, b));
      t.push_back(ms * 1000.0f);
    }
    GPU_CHECK(gpuEventDestroy(a));
    GPU_CHECK(gpuEventDestroy(b));
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };
  const float us_tiles = time_us(run_tiles), us_split = time_us(run_split);
  auto gt = d_tiles.download(), gs = d_split.download();
  const size_t orow = size_t(nh) * kHd;
  double worst_pair = 0;
  for (int n = 0; n < rows; ++n)
    worst_pair = std::max(worst_pair, rel_l2(gt.data() + n * orow, gs.data() + n * orow, orow));
  auto kf = std::vector<float>(kc.size()), vf = std::vector<float>(vc.size());
  for (size_t i = 0; i < kc.size(); ++i) kf[i] = bf16_to_f32(kc[i]), vf[i] = bf16_to_f32(vc[i]);
  std::vector<float> ref(orow), scratch(cap);
  for (int n : {0, 1, 63, 64, 200, 447, 510, 511}) {
    for (int h = 0; h < nh; ++h)
      cpu::f32_attention_sinks_head(qkv.data() + size_t(n) * R + size_t(h) * kHd, kf.data(),
                                    vf.data(), cap, nkv, kHd, cpu::gqa_kv_head(h, nh, nkv), pos[n],
                                    0, bf16_to_f32(sinks[h]), ref.data() + size_t(h) * kHd,
                                    scratch.data());
    EXPECT_LE(rel_l2(gt.data() + n * orow, ref.data(), orow), 1e-5) << "tiles, row " << n;
    EXPECT_LE(rel_l2(gs.data() + n * orow, ref.data(), orow), 1e-5) << "split-K, row " << n;
  }
  EXPECT_LE(worst_pair, 2e-5);  // each within 1e-5 of the CPU
  // Useful work: sum over rows of (pos + 1) keys x 64 heads x (QK + PV) x 64 x 2 flops.
  double flops = 0;
  for (int n = 0; n < rows; ++n) flops += double(pos[n] + 1) * nh * 2 * kHd * 2;
  std::printf("[ attention tiles ] 512-row chunk, pos 3584..4095, full, 64/8, bf16 KV (%s): "
              "tiles %.1f us (%.1f TFLOP/s useful), split-K %.1f us (%.1f TFLOP/s), "
              "speedup %.2fx; tiles vs split-K worst rel L2 %.2e\n",
              GPU_RT_NAME, us_tiles, flops / us_tiles * 1e-6, us_split,
              flops / us_split * 1e-6, us_split / us_tiles, worst_pair);
}

}  // namespace
}  // namespace gptoss
