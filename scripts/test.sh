#!/usr/bin/env bash
# The whole test suite, as CI runs it (README.md):
#   1. install build/test dependencies (Debian packages) and make the model fixtures;
#   2. Release build: unit tests, ONNX conformance, CLI tests, real-model tests;
#   3. ASan+UBSan build: the same tests except the slow real-model ones;
#   4. the ONNX reader fuzzer, seed 1 and KVANT_FUZZ_RUNS runs (default 400000), from a seed corpus plus tests/fuzz/regressions.
# Prints "tests: N passed, N failed" last; exits non-zero on any failure.
# KVANT_QUICK=1 runs only step 2 (for local iteration).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=${KVANT_JOBS:-2}
# The interop tests (ctest label `interop`) skip when ONNX Runtime is missing,
# except here: CI must not pass them silently.
export KVANT_REQUIRE_ORT=1
# Likewise the HTML report test without Chromium.
export KVANT_REQUIRE_CHROMIUM=1
# tests/cli/generate_test.sh compares with PyTorch, which install_deps.sh --fixtures installs:
# fail rather than skip without it.
export KVANT_REQUIRE_TORCH=1
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
passed=0
failed=0
failures=()

step() { printf '\n=== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }
record() {  # record NAME STATUS
  if [[ $2 -eq 0 ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$1"); fi
}
# Runs ctest and adds its per-test counts to the totals.
run_ctest() {
  local dir=$1; shift
  local log; log=$(mktemp)
  ctest --test-dir "$dir" --output-on-failure --no-tests=error -j1 "$@" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  local line; line=$(grep -E "tests passed, [0-9]+ tests failed out of [0-9]+" "$log" | tail -1)
  if [[ -n "$line" ]]; then
    local total fail
    total=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")
    fail=$(sed -E 's/.* ([0-9]+) tests failed.*/\1/' <<<"$line")
    passed=$((passed + total - fail)); failed=$((failed + fail))
    [[ $fail -gt 0 ]] && failures+=("ctest in $dir")
  else
    record "ctest in $dir (no summary)" 1
  fi
  rm -f "$log"
  return "$status"
}

step "dependencies"
scripts/install_deps.sh --fixtures || { echo "tests: 0 passed, 1 failed"; exit 1; }

step "model fixtures"
/usr/bin/python3 scripts/make_fixtures.py --out .fixtures
record "make_fixtures" $?

step "Release build"
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DKVANT_BUILD_BENCH=ON >/dev/null && cmake --build build/release -j"$jobs"
build_status=$?
record "release build" $build_status
if [[ $build_status -eq 0 ]]; then
  KVANT_FIXTURES="$root/.fixtures" run_ctest build/release
fi

if [[ "${KVANT_QUICK:-0}" != 1 ]]; then
  step "AddressSanitizer + UndefinedBehaviorSanitizer build"
  # -O1 -g1: what ASan recommends, and quicker to build than -O2 -g.
  cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
    -DKVANT_SANITIZE=ON >/dev/null &&
    cmake --build build/asan -j"$jobs"
  build_status=$?
  record "sanitizer build" $build_status
  if [[ $build_status -eq 0 ]]; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      KVANT_FIXTURES="$root/.fixtures" run_ctest build/asan -LE "slow|interop"
  fi

  # A fixed seed and run count make this a reproducible regression check (a
  # crash here also happens on the developer's machine, with the same
  # inputs); exploratory fuzzing is a longer run by hand with other seeds
  # (README.md, Testing). Inputs that once crashed live in tests/fuzz/regressions.
  step "fuzzing the ONNX reader (seed 1, ${KVANT_FUZZ_RUNS:-400000} runs)"
  if [[ -f tests/fuzz/CMakeLists.txt ]]; then
    CC=clang CXX=clang++ cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DKVANT_FUZZ=ON \
      -DKVANT_BUILD_TESTS=ON >/dev/null && cmake --build build/fuzz -j"$jobs" --target fuzz_onnx_reader &&
      rm -rf build/fuzz/corpus && scripts/make_fuzz_corpus.sh build/fuzz/corpus >/dev/null &&
      cp tests/fuzz/regressions/* build/fuzz/corpus/ &&
      build/fuzz/tests/fuzz/fuzz_onnx_reader build/fuzz/corpus -seed=1 -runs="${KVANT_FUZZ_RUNS:-400000}" \
        -max_total_time=600 \
        -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 | tail -15
    record "fuzz_onnx_reader" "${PIPESTATUS[0]}"
  fi
fi

step "done"
if ((failed)); then printf 'failed: %s\n' "${failures[@]}"; fi
echo "tests: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
