// kernels/gpu/target.h: the launch limits of the GPUs we compile for (sm_90: H100/H200; gfx90a:
// one MI250 GCD), and a launch record checked against them. Plain C++ with no GPU runtime, so any
// build (the CPU build's gpu_launch_limits test too) can check the launch shapes of both targets;
// vendor.h picks the target being compiled for (kTarget, kWaveSize).
//
// How a kernel joins the checks (docs/gpu.md, "Launch limits"):
//   1. a host function computes its dynamic shared memory (and grid/block) from the shapes;
//   2. the launch passes exactly that KernelLaunch (grid, threads, dyn_smem_bytes);
//   3. tests/gpu/launch_limits_test.cpp enumerates it for the tiny, 20b and 120b shapes and every
//      row count a device step can have, on both targets;
//   4. the HIP build's resource report (tests/gpu/hip_resource_report.py) adds its static LDS,
//      registers and scratch from the code object, keyed by KernelLaunch::kernel.
#pragma once
#include <cstddef>
#include <string>

namespace gptoss::gpu {

enum class GpuVendor { nvidia, amd };

struct GpuTarget {
  const char* name;               // "sm_90" | "gfx90a" (the compiler's architecture name)
  GpuVendor vendor;
  int wave_size;                  // threads per wave (warp): 32 | 64
  int max_threads_per_block;      // 1024 on both
  size_t max_smem_per_block;      // bytes of shared memory (LDS) one block may use, static +
                                  // dynamic (NVIDIA: with the opt-in attribute; 48 KiB without)
  size_t smem_per_cu;             // bytes per SM / CU, shared by its resident blocks
  int max_grid_yz;                // largest gridDim.y / gridDim.z
  int max_waves_per_simd;         // occupancy ceiling per SIMD (AMD) / SM sub-partition (NVIDIA)
  int simds_per_cu;               // 4 on both (SM sub-partitions on NVIDIA)
  int vgprs_per_simd_lane;        // AMD: unified VGPR file (arch VGPRs + AGPRs) per lane; NVIDIA: 0
  int vgpr_granule;               // AMD: VGPR allocation granule per wave; NVIDIA: 0
};

// H100 / H200 (compute capability 9.0): 227 KiB per block with the opt-in, 228 KiB per SM.
inline constexpr GpuTarget kSm90{"sm_90", GpuVendor::nvidia, 32, 1024, 227 * 1024, 228 * 1024,
                                 65535, 16, 4, 0, 0};
// MI250 / MI250X GCD (CDNA2): 64 KiB of LDS per workgroup and per CU, wave 64, 8 waves per SIMD,
// 512 VGPRs per lane shared by arch VGPRs and AGPRs, allocated in granules of 8.
inline constexpr GpuTarget kGfx90a{"gfx90a", GpuVendor::amd, 64, 1024, 64 * 1024, 64 * 1024,
                                   65535, 8, 4, 512, 8};
inline constexpr const GpuTarget* kAllTargets[] = {&kSm90, &kGfx90a};

// One kernel launch as the host issues it.
struct KernelLaunch {
  const char* kernel = nullptr;  // the kernel's name in the source, template arguments included
                                 // ("moe_gemv_kernel<4, true>"): the resource report's key
  int grid_x = 0, grid_y = 1, grid_z = 1;
  int threads = 0;               // per block (1-D blocks)
  size_t dyn_smem_bytes = 0;     // dynamic shared memory passed at launch
  size_t static_smem_bytes = 0;  // the kernel's own __shared__ arrays, from the constants that
                                 // size them (the resource report checks them against the code
                                 // object's group segment)
  bool active() const { return threads > 0; }
};

// "" when `l` fits target t (threads, shared memory, grid), else one line saying what does not.
std::string launch_limit_error(const KernelLaunch& l, const GpuTarget& t);

// The target named `name` ("sm_90", "gfx90a"), or nullptr.
const GpuTarget* find_target(const std::string& name);

}  // namespace gptoss::gpu
