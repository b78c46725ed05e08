# Shared by the CLI test scripts (source it): pass/fail counters and the two
# checks every command is held to. Runs in the caller's working directory.
failures=0
passes=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
pass() { passes=$((passes + 1)); }

# expect_ok DESC NEEDLE CMD...: exit 0 and stdout contains NEEDLE.
expect_ok() {
  local desc=$1 needle=$2
  shift 2
  "$@" >out.txt 2>err.txt
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    fail "$desc: exit $rc: $(cat err.txt)"
  elif ! grep -qF -- "$needle" out.txt; then
    fail "$desc: output lacks '$needle': $(head -c 2000 out.txt)"
  else
    pass
  fi
}

# expect_error DESC NEEDLE CMD...: exit 1, stderr is exactly one line
# "kvant: error: ..." containing NEEDLE, and nothing on stdout.
expect_error() {
  local desc=$1 needle=$2
  shift 2
  "$@" >out.txt 2>err.txt
  local rc=$?
  local lines
  lines=$(wc -l <err.txt)
  if [[ $rc -ne 1 ]]; then
    fail "$desc: exit $rc (want 1): $(cat err.txt)"
  elif [[ $lines -ne 1 ]] || ! grep -q '^kvant: error: ' err.txt; then
    fail "$desc: stderr is not one 'kvant: error:' line: $(cat err.txt)"
  elif ! grep -qF -- "$needle" err.txt; then
    fail "$desc: message lacks '$needle': $(cat err.txt)"
  else
    pass
  fi
}

# check_written_models: every model kvant wrote under the current folder
# passes onnx.checker full_check at its opset (ONNX Runtime for opsets newer
# than Debian's onnx knows): tests/cli/check_models.py.
check_written_models() {
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  if /usr/bin/python3 "$here/check_models.py" . "$here/../.." >check.txt 2>&1; then
    pass
  else
    fail "models kvant wrote are invalid: $(cat check.txt)"
  fi
  tail -1 check.txt
}
