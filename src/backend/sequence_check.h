// sequence_check.h: the sequence rules of backend.h's Row, enforced in one place for every
// backend: the Engine checks each step, every rank of the pipeline checks each micro-batch from
// its headers. A backend's run() may then assume them (it does not check positions itself).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace gptoss {

class SequenceCheck {
 public:
  // vocab <= 0: tokens are not checked (ranks that never see token ids).
  SequenceCheck(int max_slots, int ctx, int vocab);

  // Checks one step's rows in order against what each slot holds, and records them when all are
  // valid. Throws Error "<what> [micro-batch id] row i (slot s): what is wrong" for the first bad
  // row (id >= 0 names the micro-batch), with nothing recorded: slot outside [0, max_slots), pos outside [0, ctx), token outside
  // [0, vocab), kNewSeq with pos != 0, a pos that neither is 0 (a restart) nor continues the
  // slot's sequence (last position + 1), or a restart after other rows of the same slot in the
  // same step.
  void apply(std::span<const Row> rows, const char* what, int64_t id = -1);

  // Positions a slot holds (its next position).
  int32_t length(int slot) const { return len_[static_cast<size_t>(slot)]; }
  int max_slots() const { return static_cast<int>(len_.size()); }

 private:
  int ctx_, vocab_;
  std::vector<int32_t> len_, next_;  // [max_slots] recorded / tentative lengths
  std::vector<uint32_t> seen_;       // [max_slots] step stamp of the slot's last row
  uint32_t step_ = 0;
};

}  // namespace gptoss
