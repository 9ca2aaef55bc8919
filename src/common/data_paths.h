// data_paths.h: where the programs find their default model and tokenizer at run time: an
// environment variable, else the folder the program itself lives in (the build folder, where the
// build writes tokenizer.bin and tiny.bin), wherever that folder has been moved.
#pragma once
#include <string>

namespace gptoss {

// The folder of the running program (/proc/self/exe's), "." if unknown.
std::string program_dir();
// $GPTOSS_MODEL, else tiny.bin in the program's folder.
std::string default_model_path();
// $GPTOSS_TOKENIZER, else tokenizer.bin in the program's folder.
std::string default_tokenizer_path();

}  // namespace gptoss
