#!/usr/bin/env bash
# The per-ISA kernel folders (src/kernels/x86_*) are compiled with their own
# -m flags (CMakeLists.txt). A weak symbol defined there (an inline function
# or template instantiation that other files emit too) could be the copy the
# linker keeps for the whole program, and then code every CPU runs would
# contain AVX-512 or AMX instructions. This fails if any such object defines
# a weak (W/V) or unique (u) symbol. DW.ref.__gxx_personality_v0 is exempt:
# it is data (a pointer to the C++ exception personality routine, which the
# unwinder reads), not code, and every copy holds the same address; builds
# with landing pads in these files (ASan, -O1) emit it.
#   check_isa_symbols.sh BUILD_DIR
set -euo pipefail
build=${1:?BUILD_DIR}
objects=$(find "$build/CMakeFiles/kvant_core.dir/src/kernels" -path '*/x86_*' -name '*.o' | sort)
if [[ -z $objects ]]; then
  echo "no per-ISA objects under $build (not an x86-64 build?)"
  exit 0
fi
status=0
for o in $objects; do
  weak=$(nm -C --defined-only "$o" | awk '$2 ~ /^[WVu]$/ && $3 !~ /^DW\.ref\./' || true)
  if [[ -n $weak ]]; then
    echo "FAIL: $o defines weak symbols (compiled with its ISA's flags, they may replace other files' copies):"
    echo "$weak" | head -20
    status=1
  fi
done
[[ $status -eq 0 ]] && echo "ok: $(wc -w <<<"$objects") per-ISA objects define no weak symbols"
exit $status
