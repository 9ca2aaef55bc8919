// mpi_gtest_main.h: what mpi_gtest_main.cpp's main() gives the test files: the command-line
// arguments left after GoogleTest took its own (--gtest_*), e.g. `--transport=mpi` for
// comm_ipc_transport_test (one binary, several ranks: each rank may get its own arguments).
#pragma once
#include <string>
#include <vector>

namespace gptoss::comm::testing_args {

const std::vector<std::string>& args();  // argv[1..] without GoogleTest's flags
bool has(const std::string& arg);        // exact match

}  // namespace gptoss::comm::testing_args
