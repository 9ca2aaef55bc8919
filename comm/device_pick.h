// device_pick.h: which accelerator this rank uses, from its local rank, so that a bare
// `srun -n 8 ./run ...` or `mpirun -np 8 ./run ...` on an 8-GCD node gives each rank its own device
// even when no wrapper narrowed the visible devices (launch/bind.sh does narrow them; then one
// device is visible and index 0 is picked).
#pragma once

namespace gptoss::comm {

// This process's index among the ranks of its node, from the launcher's environment:
// OMPI_COMM_WORLD_LOCAL_RANK (Open MPI mpirun), SLURM_LOCALID (srun), MPI_LOCALRANKID (MPICH
// Hydra), PMI_LOCAL_RANK (checked in that order); -1 when none is set (a plain
// single process). Does not need MPI to be initialized.
int local_rank_from_env();

// Device index to use among device_count visible devices:
//   device_count <= 0          -> -1 (no device: CPU backend)
//   device_count == 1          -> 0  (the wrapper already gave this rank its own device)
//   otherwise                  -> local_rank % device_count (local_rank < 0 counts as 0).
// With more local ranks than devices, ranks share devices round-robin; the caller may warn.
int pick_local_device(int device_count, int local_rank);

// Same, with the local rank from World::current() if MPI is up, else local_rank_from_env().
int pick_local_device(int device_count);

}  // namespace gptoss::comm
