// mpi_check.h: the checked-call macro for MPI (the MPI member of the CHECK_* family).
// The transport sets MPI_ERRORS_RETURN on its communicators, so a failing MPI call returns a code
// that CHECK_MPI turns into a gptoss::Error naming the call, this rank and MPI's own message.
#pragma once
#include <mpi.h>

#include "common/error.h"

namespace gptoss::comm {
// "MPI_Isend(...) failed on rank 3: MPI_ERR_RANK: invalid rank" (rank looked up lazily).
[[noreturn]] void fail_mpi(const char* call, int code, const char* file, int line);
}  // namespace gptoss::comm

#define CHECK_MPI(call)                                                               \
  do {                                                                                \
    int rc_ = (call);                                                                 \
    if (rc_ != MPI_SUCCESS) ::gptoss::comm::fail_mpi(#call, rc_, __FILE__, __LINE__); \
  } while (0)
