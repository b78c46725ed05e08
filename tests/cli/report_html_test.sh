#!/usr/bin/env bash
# The HTML reports of `kvant quantize`, `sensitivity` and `eval`
# (--report FILE.html): each page is one self-contained file whose numbers
# are the JSON report's, names from the model are escaped, and headless
# Chromium renders it with no console message at all (the page has no
# script; its Content-Security-Policy turns any fetch into a console error,
# and a control page that fetches shows the check catches one).
#   usage: report_html_test.sh PATH/TO/kvant
# Needs Debian's chromium (scripts/install_deps.sh): exits 77 (skip) without
# it, or fails when KVANT_REQUIRE_CHROMIUM is set (scripts/test.sh sets it).
set -u

KVANT=$(realpath "${1:?usage: report_html_test.sh PATH/TO/kvant}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [[ -z "$CHROMIUM" ]]; then
  why="chromium is not installed (scripts/install_deps.sh installs it)"
  if [[ -n "${KVANT_REQUIRE_CHROMIUM:-}" ]]; then
    echo "FAIL: $why, and KVANT_REQUIRE_CHROMIUM is set"
    exit 1
  fi
  echo "SKIPPED: $why"
  exit 77
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# shellcheck source=expect.sh
source "$ROOT/tests/cli/expect.sh"

mkdir calib
cp "$ROOT"/models/samples/fashion_mnist_*.npy calib/
# The bundled CNN with one Conv renamed to markup: the page must show it as text.
/usr/bin/python3 - "$ROOT/models/fashion_mnist_cnn.onnx" <<'PY'
import sys, numpy as np, onnx
m = onnx.load(sys.argv[1])
conv = next(n for n in m.graph.node if n.op_type == "Conv")
conv.name = '<script>alert("x")</script>&conv'
onnx.save(m, "model.onnx")
np.save("labels.npy", np.array([9, 2, 1], dtype=np.int64))
PY

expect_ok "quantize --report html" "quantized" \
  "$KVANT" quantize model.onnx -o q.onnx --calib calib --report q.html
expect_ok "quantize --report json" "quantized" \
  "$KVANT" quantize model.onnx -o q.onnx --calib calib --report q.json --force
expect_ok "quantize --accuracy-target --report html" "quantized" \
  "$KVANT" quantize model.onnx -o t.onnx --calib calib --eval calib --metric sqnr --accuracy-target 45 --report t.html
expect_ok "quantize --mode dynamic --report html" "quantized" \
  "$KVANT" quantize model.onnx -o d.onnx --mode dynamic --report d.html
expect_ok "quantize --mode weight-only --report html" "quantized" \
  "$KVANT" quantize model.onnx -o w.onnx --mode weight-only --bits 4 --group-size 32 --report w.html
expect_ok "sensitivity --report html" "only this layer" \
  "$KVANT" sensitivity model.onnx --calib calib --labels labels.npy --leave-one-out --report s.html --json s.json
expect_ok "eval --report html" "q.onnx" "$KVANT" eval model.onnx q.onnx --data calib --labels labels.npy --report e.html
expect_error "sensitivity --report over --json" "name the same file" \
  "$KVANT" sensitivity model.onnx --calib calib --report same.json --json same.json

# Structure and numbers, against the JSON of the same run.
/usr/bin/python3 - <<'PY' && pass || fail "page structure"
import json, re
from html.parser import HTMLParser

class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.tags, self.text = set(), [], []
    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if "id" in a: self.ids.add(a["id"])
        for k, v in attrs:
            assert not k.startswith("on"), (tag, k)  # no event handlers
            assert not (v or "").lower().startswith(("http:", "https:", "//", "javascript:")), (tag, k, v)
    def handle_data(self, d):
        self.text.append(d)

def page(name):
    src = open(name, encoding="utf-8").read()
    assert "<script" not in src.lower(), name          # the markup name is escaped, and nothing else is a script
    assert not re.search(r"(src|href)\s*=", src), name  # nothing fetched
    p = Page(); p.feed(src); p.close()
    p.src = src
    return p

q = page("q.html")
r = json.load(open("q.json"))
assert {"summary", "layer-error", "layer-error-chart", "ranges", "layer-table"} <= q.ids, q.ids
hist = [i for i in q.ids if i.startswith("hist-")]
assert len(hist) == len(r["histograms"]) > 0, (len(hist), len(r["histograms"]))
acts = [h for h in r["histograms"] if not h["weight"]]
wts = [h for h in r["histograms"] if h["weight"]]
assert len(acts) >= 5 and len(wts) == 5, (len(acts), len(wts))
for h in r["histograms"]:
    assert sum(h["counts"]) == h["binned"] <= h["values"], h["tensor"]
    assert h["plot_lo"] <= min(h["lo"], h["min"]) and h["plot_hi"] >= max(h["hi"], h["max"]), h["tensor"]
text = " ".join(q.text)
assert '<script>alert("x")</script>&conv' in text, "the renamed node is shown as text"
for layer in r["layers"]:
    assert layer["node"] in text, layer["node"]
    if layer["own_sqnr_db"] is not None:
        assert f'{layer["own_sqnr_db"]:.1f}' in text, layer
# one bar per layer and series
assert q.src.count('class="bar"') == 2 * len(r["layers"]) - sum(l["own_sqnr_db"] is None for l in r["layers"])

t = page("t.html")
assert {"frontier", "frontier-chart", "frontier-table"} <= t.ids, t.ids
d, w = page("d.html"), page("w.html")
for p in (d, w):  # no samples in these modes: weights only
    assert any(i.startswith("hist-") for i in p.ids), p.ids
s = page("s.html")
sj = json.load(open("s.json"))
assert {"sensitivity", "sensitivity-chart", "sensitivity-table"} <= s.ids, s.ids
assert s.src.count('class="bar"') == 2 * sum(l["measured"] for l in sj["layers"])
e = page("e.html")
assert {"eval", "eval-table", "eval-top1-chart", "eval-sqnr-chart"} <= e.ids, e.ids
PY

# Chromium: each page renders, with no console message; the control page must produce one.
cat >control.html <<'HTML'
<!DOCTYPE html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>control</title></head><body><svg id="c"></svg><img src="https://example.invalid/x.png" alt=""></body></html>
HTML
render() {  # render PAGE: DOM in PAGE.dom, Chromium's log in PAGE.log; returns chromium's status
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$WORK/profile" \
    --enable-logging=stderr --v=0 --dump-dom "file://$WORK/$1" >"$1.dom" 2>"$1.log"
}
if render control.html && grep -q "CONSOLE" control.html.log; then
  pass
else
  fail "the console check does not see the control page's blocked fetch: $(grep -v dbus control.html.log | tail -5)"
fi
for f in q.html t.html d.html w.html s.html e.html; do
  if ! render "$f"; then
    fail "chromium could not render $f: $(tail -3 "$f.log")"
  elif grep -q "CONSOLE" "$f.log"; then
    fail "$f: console messages: $(grep CONSOLE "$f.log" | head -3)"
  elif [[ $(grep -o "<svg" "$f.dom" | wc -l) -lt 1 ]] || ! grep -q "</html>" "$f.dom"; then
    fail "$f: the rendered page has no plot"
  else
    pass
  fi
done

echo "$passes passed, $failures failed"
((failures == 0))
