// split_bound: the cost model's bound on a pure ring's parallel efficiency (docs/scaling.md).
// For each model and rank count N: the stage costs of the split the pipeline picks (whole layers,
// rank 0 also embedding + LM head), and what they would be with the LM head split over every
// rank (vocab-parallel: each rank a slice of the logits and its best candidates; --head-split). The bound is
// total cost / (N x the largest stage): the most a ring of N can reach of N x one device, whatever
// the kernels do. Micro-batches of 512 decode rows + 512 prompt tokens (the 1k/1k getp shape),
// and of one row (batch-1 decode). Output: one CSV line per (model, rows, N).
//   split_bound [--ranks 2,4,8]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "model/config.h"
#include "pipeline/layer_split.h"

using namespace gptoss;

int main(int argc, char** argv) {
  std::vector<int> ranks{2, 4, 8};
  if (argc == 3 && std::string(argv[1]) == "--ranks") {
    ranks.clear();
    for (const char* p = argv[2]; *p;) {
      ranks.push_back(std::atoi(p));
      while (*p && *p != ',') ++p;
      if (*p == ',') ++p;
    }
  } else if (argc != 1) {
    std::fprintf(stderr, "usage: split_bound [--ranks 2,4,8]\n");
    return 2;
  }
  std::printf("model,decode_rows,ranks,split,layer_units_max,bound_whole_layers,"
              "bound_head_split\n");
  for (const char* name : {"20b", "120b"}) {
    const Config c = named_config(name);
    for (int d : {1, 512}) {
      const SplitRows sr = split_rows(d, d);
      const double L = layer_cost(c, sr.rows), H = head_cost(c, sr.logit_rows),
                   E = embed_cost(c, sr.rows);
      const double total = c.n_layers * L + H + E;
      for (int n : ranks) {
        if (n > c.n_layers) continue;
        const std::vector<int> split = balanced_split(c, n, sr.rows, sr.logit_rows);
        double worst = 0;
        std::string s;
        for (int r = 0; r < n; ++r) {
          const double stage = split[r] * L + (r == 0 ? H + E : 0.0);
          worst = std::max(worst, stage);
          s += (r ? ";" : "") + std::to_string(split[r]);
        }
        // The head split the pipeline makes (--head-split, head_split_plan): layers as even as
        // whole layers go, the head water-filling the stages below the fullest.
        const HeadSplitPlan hp = head_split_plan(c, n, sr.rows, sr.logit_rows);
        const double worst_split = total / (n * head_split_efficiency(c, hp, sr.rows, sr.logit_rows));
        std::printf("%s,%d,%d,%s,%.2f,%.3f,%.3f\n", name, d, n, s.c_str(), worst / L,
                    total / (n * worst), total / (n * worst_split));
      }
    }
  }
  return 0;
}
