// backend.cpp: the Backend interface's defaults for what a backend may not support.
#include "backend/backend.h"

#include "common/error.h"

namespace gptoss {

void Backend::head_slice_first(const float*, std::span<const int32_t>, std::span<const int32_t>,
                               int, int, void*) {
  fail("this backend cannot compute a slice of the LM head (--head-split off)");
}

void Backend::head_slice_next(const void*, void*, int, int, int) {
  fail("this backend cannot compute a slice of the LM head (--head-split off)");
}

void Backend::head_rows_read(const void*, int, HeadRow*) {
  fail("this backend cannot compute a slice of the LM head (--head-split off)");
}

}  // namespace gptoss
