# Sourced by the interop tests: exits 77 (ctest's skip code) when ONNX
# Runtime for node is missing, or 1 when KVANT_REQUIRE_ORT is set (CI
# machines, where its absence is a set-up error).
#   usage: source require_ort.sh ROOT
ort_root=${1:?usage: source require_ort.sh ROOT}
if [[ ! -d "$ort_root/node_modules/onnxruntime-node" ]] || ! command -v node >/dev/null; then
  why="onnxruntime-node is not installed in $ort_root/node_modules (or node is missing); scripts/install_deps.sh installs it"
  if [[ -n "${KVANT_REQUIRE_ORT:-}" ]]; then
    echo "FAIL: $why, and KVANT_REQUIRE_ORT is set"
    exit 1
  fi
  echo "SKIPPED: $why (set KVANT_REQUIRE_ORT=1 to make this a failure)"
  exit 77
fi
