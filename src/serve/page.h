// page.h: the web chat page served at / (src/serve/page/: index.html, app.js, style.css), built
// into the binary by src/serve/embed_page.cmake so the server needs no files beside it and the
// page fetches nothing from the network.
#pragma once
#include <cstddef>
#include <string_view>

namespace gptoss::serve {

struct PageFile {
  const char* path;  // "/index.html"
  const char* type;  // Content-Type
  const unsigned char* data;
  size_t size;
};

// The file at `path`, or nullptr.
const PageFile* find_page_file(std::string_view path);

}  // namespace gptoss::serve
