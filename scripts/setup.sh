#!/usr/bin/env bash
# Installs every Debian package qnoise needs (idempotent, non-interactive), then configures and
# builds it in build/ (Release: everything, or with --demo alone only the `qnoise` program). A full
# build is then installed with `cmake --install build --prefix /usr/local` (with sudo when not
# root): the `qnoise` program, the libraries and headers with their CMake package (find_package),
# the operator library and the Python package. Then, on request:
#   --test   run the test suite (ctest); exits non-zero when a test fails
#   --sanitize   also install clang, build qnoise with ASan + UBSan in build-sanitize/ and run the
#                readers' and kernels' tests under them and each fuzz target for 20 s
#                (scripts/sanitize.sh, scripts/fuzz.sh; docs/reliability.md), after --test's tests
#   --demo   run `qnoise demo` on built-in default data
#   --no-install   skip the steps that need root: the Debian packages (already there) and the
#                  install into /usr/local (build/ is still built; the tests do not need it)
set -euo pipefail
cd "$(dirname "$0")/.."

run_tests=0
run_sanitized=0
run_demo=0
install=1
for arg in "$@"; do
  case "$arg" in
    --test) run_tests=1 ;;
    --sanitize) run_sanitized=1 ;;
    --demo) run_demo=1 ;;
    --no-install) install=0 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

packages=(
  cmake g++ make ccache pkg-config
  libtorch-dev libopenblas-dev            # tensors and autograd; OpenBLAS, or matmuls run ~40x slower
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev zlib1g-dev
  libyaml-cpp-dev                         # fairseq's quantization config (YAML) as a plan
  libgloo-dev                             # Gloo headers: data-parallel training on c10d::ProcessGroupGloo
  dataset-fashion-mnist bible-kjv         # the real data sets: Fashion-MNIST IDX files, the KJV Bible
  jq gnuplot-nox                          # bench/experiments: reading JSON results, plotting them
  python3-torch python3-torchvision python3-numpy python3-yaml python3-pytest  # the Python package (fairseq's YAML plans), its tests, examples
)
if [ "$run_sanitized" = 1 ]; then
  packages+=(clang libclang-rt-dev libomp-dev)  # sanitizers' and libFuzzer's runtimes; clang's OpenMP
fi

if [ "$install" = 1 ]; then
  missing=()
  for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "setup.sh: installing ${missing[*]}"
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
  fi
fi

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
if [ "$run_tests" = 1 ] || [ "$run_demo" = 0 ]; then
  cmake --build build -j "$jobs"
  if [ "$install" = 1 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "setup.sh: installing qnoise into /usr/local"
    $sudo cmake --install build --prefix /usr/local
  fi
else
  cmake --build build -j "$jobs" --target qnoise_cli  # the demo needs the program alone
fi

if [ "$run_tests" = 1 ]; then
  ctest --test-dir build --output-on-failure -j "$jobs" --timeout 300
fi
if [ "$run_sanitized" = 1 ]; then
  scripts/sanitize.sh
  scripts/fuzz.sh --seconds 20
fi
if [ "$run_demo" = 1 ]; then
  ./build/qnoise demo
fi
