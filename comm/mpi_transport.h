// mpi_transport.h: the MPI implementation of transport.h (host memory; the CPU backend and, later,
// links between nodes or GPUs without peer access). Messages are two non-blocking sends per
// message (header+rows, payload) into receives pre-posted on persistent requests over the
// receiver's slot buffers; credits are one uint64 each way back. See docs/transport.md.
#pragma once
#include <mpi.h>

#include <memory>

#include "comm/transport.h"

namespace gptoss::comm {

// Point-to-point links on a communicator that the caller dedicates to them (not collective).
// comm must have MPI_ERRORS_RETURN set (open_mpi_ring does both). spec.channel picks the tags.
std::unique_ptr<SendLink> open_mpi_send_link(MPI_Comm comm, int peer, const LinkSpec& spec);
std::unique_ptr<RecvLink> open_mpi_recv_link(MPI_Comm comm, int peer, const LinkSpec& spec);

// The ring over MPI for every link. Collective over comm (see open_ring).
std::unique_ptr<Ring> open_mpi_ring(MPI_Comm comm, const LinkSpec& spec);

}  // namespace gptoss::comm
