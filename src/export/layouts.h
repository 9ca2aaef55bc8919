// layouts.h: where each of our tensors (model/schema.h) lives in the three checkpoint layouts we
// read (Hugging Face, OpenAI original/, legacy fp32 .bin): each layout maps its names onto the
// schema's, shapes come from the schema. Also reading/writing their config files. The same
// tables drive the exporter (checkpoint -> our file) and the synthetic checkpoint writer (our
// canonical random values -> checkpoint), so the two cannot disagree.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/config.h"

namespace gptoss {

enum class Layout { HF, Original, Legacy };

// One checkpoint tensor (or all of it) = a contiguous range of elements of one of our tensors.
struct SourcePiece {
  std::string src_name;            // name in the checkpoint
  std::vector<int64_t> src_shape;  // its expected shape
  std::string dst_name;            // our tensor (model/schema.h)
  uint64_t dst_elem = 0;           // first element of the range in our tensor
  uint64_t elems = 0;
  bool u8 = false;                 // MXFP4 blocks/scales (U8); else a float tensor (-> bf16)
};
// For Layout::HF and Layout::Original.
std::vector<SourcePiece> source_pieces(const Config& c, Layout layout);

// Legacy fp32 .bin: 60-byte header, then fp32 arrays in this order. Expert weights (expert =
// true) are [E, rows, cols] fp32 that become our `dst_name`.blocks / .scales.
inline constexpr uint64_t kLegacyHeaderBytes = 60;
struct LegacyPiece {
  std::string dst_name;  // our tensor, or "layers.L.mlp1" / "layers.L.mlp2" for expert weights
  bool expert = false;
  int64_t experts = 0, rows = 0, cols = 0;  // expert weights only
  uint64_t elems = 0;
  uint64_t file_offset = 0;  // bytes from the start of the file
};
std::vector<LegacyPiece> legacy_pieces(const Config& c);
uint64_t legacy_file_bytes(const Config& c);
void legacy_header(const Config& c, uint8_t out[60]);
// Parses a legacy header; missing fields get the gpt-oss defaults. Throws naming `path`.
Config parse_legacy_header(const uint8_t* h, const std::string& path);

// Config files. `synthetic` is the "gptoss_synthetic" label ("" for real checkpoints).
nlohmann::json hf_config_json(const Config& c, const std::string& synthetic);
nlohmann::json original_config_json(const Config& c, const std::string& synthetic);
// Read config.json of each layout; Error "<path>: ..." for missing or malformed fields.
nlohmann::json read_json_file(const std::string& path);
Config parse_hf_config(const nlohmann::json& j, const std::string& path);
Config parse_original_config(const nlohmann::json& j, const std::string& path);
std::string synthetic_label(const nlohmann::json& j);  // "" when absent

}  // namespace gptoss
