// ipc_transport.h: the GPU IPC transport (GPU builds only: library gptoss_comm_ipc) and the ring
// that picks, per link, GPU IPC or MPI. Device payloads move GPU to GPU with no host staging and
// no host round trip, allocation or MPI call per message:
//  - host plane: MsgHeader + RowHeaders live in a POSIX shared-memory segment mapped by both
//    processes of the link (same host), with the host's sequence and credit words;
//  - device plane: the receiver's K payload slots and ready flags live in its device memory,
//    exported to the sender with gpuIpcGetMemHandle at open; the sender's stream copies the
//    payload into the peer slot and publishes the slot's sequence number (system-scope release);
//    the receiver's stream waits for it on the device; device credits flow back the same way.
// Protocol, ordering, deadlock freedom and wraparound: docs/transport.md and ipc_transport.cpp.
#pragma once
#include <mpi.h>

#include <memory>
#include <string>

#include "comm/transport.h"

namespace gptoss::comm {

// Opens the ring 0 -> 1 -> ... -> N-1 -> 0 for DEVICE payloads. COLLECTIVE over comm; every
// rank calls it with the same spec (spec.payload_memory must be Device) after selecting its GPU
// (gpuSetDevice): the current device is the one the links use.
// Per link (decided identically on both ends, at open, and printed by Ring::describe()):
//  - gpu-ipc: both ranks on the same host, each GPU visible to and peer-accessible from the other
//    (or the same GPU), and neither rank has GPTOSS_IPC_DISABLE=1 in its environment. Slots have
//    payload_memory Device. One rank: a link to itself, same code path.
//  - mpi (host-staged) otherwise: the MPI transport, wrapped so that its Slots are device slots
//    too: post_on copies the payload to the MPI host slot on the stream and the MPI send starts
//    once that copy is done; receive_on copies it into a device slot on the stream; release_on
//    hands the MPI slot back once the stream's readers are done. Only a rank without any GPU gets
//    plain MPI links with host payloads ("mpi (host payload: no GPU)").
//  The ends of one ring progress each other: call next().drain() before destroying the ring.
// Environment: GPTOSS_IPC_DISABLE=1 forces MPI; GPTOSS_IPC_BLOCKS=n caps the copy grid (def. 64).
std::unique_ptr<Ring> open_gpu_ring(MPI_Comm comm, const LinkSpec& spec);

}  // namespace gptoss::comm
