// ipc_transport.h: the ring for DEVICE payloads (GPU builds only: library gptoss_comm_ipc). Per
// link it picks GPU IPC (ipc_links.h: device payloads move GPU to GPU with no host staging and no
// host round trip, allocation or MPI call per message) or, where IPC cannot work, the MPI transport
// behind device slots (staged_links.h); one rank gets the loopback (loopback_transport.h).
// Protocols, ordering, deadlock freedom and wraparound: docs/transport.md, ipc_links.cpp.
#pragma once
#include <mpi.h>

#include <memory>
#include <string>

#include "comm/transport.h"

namespace gptoss::comm {

// Opens the ring 0 -> 1 -> ... -> N-1 -> 0 for DEVICE payloads (spec.payload_memory must be
// Device). COLLECTIVE over comm; every rank calls it with the same shared fields of spec (see
// LinkSpec; a rank whose differ makes every rank throw WorldError naming it). The links use GPU
// spec.device: when it is >= 0 this calls gpuSetDevice(spec.device) first, else the current
// device is used. Per link (decided identically on both ends, at open, and printed by
// Ring::describe()):
//  - gpu-ipc: both ranks on the same host, each GPU visible to and peer-accessible from the other
//    (or the same GPU), and both ranks allow it (spec.allow_ipc). Slots have payload_memory
//    Device; the copy kernel uses at most spec.copy_blocks blocks.
//  - mpi (host-staged: <why>) otherwise: the MPI transport, wrapped so that its Slots are device
//    slots too: post_on copies the payload to the MPI host slot on the stream and the MPI send
//    starts once that copy is done; receive_on copies it into a device slot on the stream;
//    release_on hands the MPI slot back once the stream's readers are done. Only a rank without
//    any GPU gets plain MPI links with host payloads ("mpi (host payload: no GPU)").
//  - one rank: "local (one rank, device slots)", the loopback: receive_on returns the slot that
//    post_on filled (same device pointer), with no copy and, when post_on, receive_on and
//    release_on use one stream, no device work at all (comm/loopback_device.cpp). Without a GPU:
//    "local (one rank, host payload: no GPU)".
// The ends of one ring progress each other: call next().drain() before destroying the ring.
std::unique_ptr<Ring> open_gpu_ring(MPI_Comm comm, const LinkSpec& spec);

}  // namespace gptoss::comm
