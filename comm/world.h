// world.h: MPI bootstrap for every program of the runtime: init/finalize (RAII), this rank's place
// in the job (rank, size, local rank on its node), clean whole-job abort with a message naming the
// rank and cause, the guarded main for MPI programs, and world-consistency checks (all ranks must
// run on the same model file and format version, or refuse to start).
#pragma once
#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <new>
#include <string>

#include "common/error.h"

namespace gptoss::comm {

// Thrown identically by EVERY rank (after a collective decided it), e.g. by
// check_same_on_all_ranks(). mpi_guarded_main prints it once (rank 0) and exits 1 on every rank
// through MPI_Finalize, instead of aborting: the job is consistent, nobody is left waiting.
struct WorldError : Error {
  using Error::Error;
};

// This process's place in the MPI job. Construct exactly once, first thing in main (it calls
// MPI_Init_thread); the destructor calls MPI_Finalize. A one-process run without mpirun/srun is a
// world of size 1 (singleton MPI), the same code path. comm() (world_comm()) is the job's
// communicator that every collective of the job uses; code names it rather than MPI_COMM_WORLD.
class World {
 public:
  // thread_level: MPI_THREAD_FUNNELED (default: only the thread that called init makes MPI calls)
  // or MPI_THREAD_MULTIPLE. Fails if the library provides less than asked.
  World(int* argc, char*** argv, int thread_level = MPI_THREAD_FUNNELED);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }  // 0 .. size-1 in comm()
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }  // index among the ranks on this node
  int local_size() const { return local_size_; }  // ranks on this node
  const std::string& host() const { return host_; }
  MPI_Comm comm() const { return comm_; }  // the job
  int next() const { return (rank_ + 1) % size_; }          // ring successor
  int prev() const { return (rank_ + size_ - 1) % size_; }  // ring predecessor

  // Global instance (set by the constructor), for abort_job and error messages; null before init.
  static World* current();

 private:
  void describe_place();  // rank_, size_, local_rank_, local_size_ from comm_

  MPI_Comm comm_ = MPI_COMM_WORLD;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  std::string host_;
};

// The job's communicator: World::current()->comm(), or MPI_COMM_WORLD before the World exists.
MPI_Comm world_comm();

// Ends the WHOLE job now: prints "<prog>: error: rank R/N (host): <cause>" to stderr and calls
// MPI_Abort(world_comm(), 1), which makes mpirun/srun kill every rank. Safe to call before
// MPI_Init (then it just exits 1).
[[noreturn]] void abort_job(const char* prog, const std::string& cause);

// The main() of every MPI program: creates the World, runs body(world), and
//  - returns body's exit code after MPI_Finalize;
//  - on WorldError (every rank threw it): rank 0 prints "<prog>: error: <msg>", all ranks exit 1
//    after MPI_Finalize;
//  - on any other exception on ANY rank: that rank prints "<prog>: error: rank R/N (host): <msg>"
//    and aborts the whole job (abort_job), so no peer is left waiting for it.
template <class F>
int mpi_guarded_main(const char* prog, int* argc, char*** argv, F&& body,
                     int thread_level = MPI_THREAD_FUNNELED);

// Reads a 64-bit fingerprint of a (possibly huge) file without reading all of it: FNV-1a over the
// file size, the first 4 MiB, the last 1 MiB and 64 blocks of 4 KiB spread evenly in between.
// Different exports, versions or truncated copies differ; it is not a full checksum.
uint64_t fingerprint_file(const std::string& path);

// Collective over comm (given explicitly: a ring of data-parallel rings is not the world). Every rank passes its value (e.g.
// fingerprint_file(model) mixed with the format version) and a short description of it (e.g.
// "/data/20b.bin (format 3)"). If all values are equal, returns. Otherwise EVERY rank throws the
// same WorldError:
//   "<what> differs between ranks: ranks 0,1 have /a/m.bin, format 3 (fingerprint ...);
//    rank 2 has /b/m.bin, format 2 (fingerprint ...); every rank must be given the same file"
void check_same_on_all_ranks(const char* what, uint64_t value, const std::string& description,
                             MPI_Comm comm);

// The fingerprint check for a model file, COLLECTIVE over MPI_COMM_WORLD (every rank of the job,
// whatever ring it is in): value = fingerprint_file(path) ^ hash(format_version).
void check_same_model_on_all_ranks(const std::string& model_path, uint32_t format_version);

// ---- implementation of the template ----
namespace detail {
void report_world_error(const char* prog, const WorldError& e);
// Creates the World; a failure to initialize MPI is reported and exits 1 (nothing to abort yet).
class WorldHolder {
 public:
  WorldHolder(const char* prog, int* argc, char*** argv, int thread_level);
  ~WorldHolder();
  World& world() { return *world_; }

 private:
  World* world_;
};
}  // namespace detail

template <class F>
int mpi_guarded_main(const char* prog, int* argc, char*** argv, F&& body, int thread_level) {
  // The World must outlive the catch blocks: abort_job has to run BEFORE MPI_Finalize, which
  // would otherwise wait for the peers that are waiting for us.
  detail::WorldHolder holder(prog, argc, argv, thread_level);
  int rc = 1;
  try {
    rc = body(holder.world());
  } catch (const WorldError& e) {
    detail::report_world_error(prog, e);
    rc = 1;
  } catch (const std::bad_alloc&) {
    abort_job(prog, "out of host memory");
  } catch (const std::exception& e) {
    abort_job(prog, e.what());
  }
  return rc;  // ~WorldHolder finalizes
}

}  // namespace gptoss::comm
