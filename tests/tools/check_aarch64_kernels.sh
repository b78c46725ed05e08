#!/usr/bin/env bash
# The generic kernel files (src/kernels/*.cc: the kernel tables, the portable
# entries and the drivers) must hold no x86 code outside the per-ISA folders,
# so that an aarch64 build compiles (CMakeLists.txt adds the x86_* folders
# only on x86-64). This compiles them with Debian's aarch64 cross compiler,
# with the project's warnings as errors. Exit 77 (ctest: skipped) when the
# cross compiler is missing (scripts/install_deps.sh installs it).
#   check_aarch64_kernels.sh SOURCE_DIR
set -euo pipefail
src=${1:?SOURCE_DIR}
cxx=aarch64-linux-gnu-g++
if ! command -v "$cxx" >/dev/null; then
  echo "skipped: $cxx not installed (apt-get install g++-aarch64-linux-gnu)"
  exit 77
fi
status=0
count=0
for f in "$src"/src/kernels/*.cc; do
  count=$((count + 1))
  if ! "$cxx" -std=c++20 -O1 -Wall -Wextra -Werror -I"$src/include" -I"$src/src" -c "$f" -o /dev/null; then
    echo "FAIL: $f does not compile for aarch64"
    status=1
  fi
done
[[ $status -eq 0 ]] && echo "ok: $count generic kernel files compile for aarch64"
exit $status
