// sequence_check.cpp: SequenceCheck (sequence_check.h).
#include "backend/sequence_check.h"

#include "common/error.h"

namespace gptoss {

SequenceCheck::SequenceCheck(int max_slots, int ctx, int vocab)
    : ctx_(ctx), vocab_(vocab), len_(static_cast<size_t>(max_slots), 0),
      next_(static_cast<size_t>(max_slots), 0), seen_(static_cast<size_t>(max_slots), 0) {}

void SequenceCheck::apply(std::span<const Row> rows, const char* what, int64_t id) {
  const int slots = max_slots();
  if (++step_ == 0) {  // stamps wrapped: forget the old ones
    std::fill(seen_.begin(), seen_.end(), 0u);
    step_ = 1;
  }
  // The message prefix is made only when a row is bad (this runs once per step or micro-batch).
  auto where = [&] { return id >= 0 ? strfmt("%s %lld", what, static_cast<long long>(id)) : std::string(what); };
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    if (r.slot < 0 || r.slot >= slots)
      fail("%s row %zu: slot %d out of range [0, %d)", where().c_str(), i, r.slot, slots);
    const size_t s = static_cast<size_t>(r.slot);
    if (seen_[s] != step_) next_[s] = len_[s];  // first row of this slot in the step
    if (r.pos < 0 || r.pos >= ctx_)
      fail("%s row %zu (slot %d): position %d out of range [0, %d) (context length)", where().c_str(), i, r.slot,
           r.pos, ctx_);
    if (vocab_ > 0 && (r.token < 0 || r.token >= vocab_))
      fail("%s row %zu (slot %d): token %d out of range [0, %d)", where().c_str(), i, r.slot, r.token, vocab_);
    if ((r.flags & Row::kNewSeq) && r.pos != 0)
      fail("%s row %zu (slot %d): a new sequence must start at position 0, got %d", where().c_str(), i, r.slot,
           r.pos);
    if (r.pos == 0 && seen_[s] == step_)
      fail("%s row %zu (slot %d): a sequence cannot restart at position 0 after other rows of "
           "the same slot in one step",
           where().c_str(), i, r.slot);
    if (r.pos != 0 && r.pos != next_[s])
      fail("%s row %zu (slot %d): position %d does not continue the sequence (next position is "
           "%d)",
           where().c_str(), i, r.slot, r.pos, next_[s]);
    seen_[s] = step_;
    next_[s] = r.pos + 1;
  }
  for (const Row& r : rows) len_[static_cast<size_t>(r.slot)] = next_[static_cast<size_t>(r.slot)];
}

}  // namespace gptoss
