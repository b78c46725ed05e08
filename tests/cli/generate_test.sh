#!/usr/bin/env bash
# End-to-end tests of `kvant generate` and `kvant perplexity` on a tiny
# LLaMA-architecture decoder made here (tests/cli/make_llm_fixture.py, a few
# seconds): greedy tokens equal PyTorch's; perplexity equals NumPy's on
# PyTorch's logits of the same windows (1e-4 relative); a model without past
# inputs generates the same tokens with a warning; an INT4 file scores a
# finite perplexity; bad inputs end in one "kvant: error:" line.
# Skips (exit 77) without /usr/bin/python3 with torch and onnx.
#   usage: generate_test.sh PATH/TO/kvant
set -u

KVANT=$(realpath "${1:?usage: generate_test.sh PATH/TO/kvant}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# shellcheck source=expect.sh
source "$ROOT/tests/cli/expect.sh"

if ! /usr/bin/python3 -c "import torch, onnx" 2>/dev/null; then
  if [[ -n "${KVANT_REQUIRE_TORCH:-}" ]]; then  # scripts/test.sh: CI installs torch, so this must run
    echo "FAIL: /usr/bin/python3 lacks torch or onnx (KVANT_REQUIRE_TORCH is set)"
    exit 1
  fi
  echo "skipped: /usr/bin/python3 lacks torch or onnx"
  exit 77
fi
if ! /usr/bin/python3 "$ROOT/tests/cli/make_llm_fixture.py" fx >make.txt 2>&1; then
  echo "FAIL: make_llm_fixture.py: $(tail -5 make.txt)"
  exit 1
fi
want=$(/usr/bin/python3 -c "import numpy as np; print(' '.join(map(str, np.load('fx/greedy.npy'))))")
n=$(echo "$want" | wc -w)

# ---- generate: greedy = PyTorch's greedy ------------------------------------------
expect_ok "generate greedy" "" "$KVANT" generate fx/model.onnx --prompt-ids fx/prompt.npy --max-new-tokens "$n" --print-ids
got=$(cat out.txt)
[[ "$got" == "$want" ]] && pass || fail "greedy tokens differ from PyTorch's: got '$got', want '$want'"
grep -qE '^prefill: 7 tokens, [0-9.]+ tok/s; decode: '$((n - 1))' tokens, [0-9.]+ tok/s$' err.txt && pass ||
  fail "no speed line: $(cat err.txt)"
expect_ok "generate 2 threads" "" "$KVANT" generate fx/model.onnx --prompt-ids fx/prompt.npy --max-new-tokens "$n" --print-ids --threads 2
[[ "$(cat out.txt)" == "$want" ]] && pass || fail "2 threads: got '$(cat out.txt)', want '$want'"
# --eos-id: stops after the first time that id is generated (the third greedy token here).
eos=$(echo "$want" | cut -d' ' -f3)
want_eos=$(echo "$want" | awk -v e="$eos" '{for (i = 1; i <= NF; ++i) {printf "%s%s", (i > 1 ? " " : ""), $i; if ($i == e) break}}')
expect_ok "generate --eos-id" "" "$KVANT" generate fx/model.onnx --prompt-ids fx/prompt.npy --max-new-tokens "$n" --print-ids --eos-id "$eos"
[[ "$(cat out.txt)" == "$want_eos" ]] && pass || fail "--eos-id $eos: got '$(cat out.txt)', want '$want_eos'"
expect_error "generate --eos-id -5" "--eos-id must be a token id" "$KVANT" generate fx/model.onnx --prompt-ids fx/prompt.npy --max-new-tokens 3 --eos-id -5
# A batch: rows [prompt; prompt reversed] give each row's batch-1 tokens, a line per row.
/usr/bin/python3 -c "import numpy as np; p = np.load('fx/prompt.npy').reshape(-1); np.save('rev.npy', p[::-1].copy()); np.save('two.npy', np.stack([p, p[::-1]]))"
expect_ok "generate reversed prompt" "" "$KVANT" generate fx/model.onnx --prompt-ids rev.npy --max-new-tokens "$n" --print-ids
want_rev=$(cat out.txt)
expect_ok "generate batch 2" "" "$KVANT" generate fx/batched.onnx --prompt-ids two.npy --max-new-tokens "$n" --print-ids
[[ "$(cat out.txt)" == "$(printf '%s\n%s' "$want" "$want_rev")" ]] && pass || fail "batch 2: got '$(cat out.txt)', want '$want' and '$want_rev'"
grep -qE '^prefill: 14 tokens, [0-9.]+ tok/s; decode: '$((2 * (n - 1)))' tokens, [0-9.]+ tok/s \(batch 2\)$' err.txt && pass ||
  fail "batch 2: speed line: $(cat err.txt)"
expect_error "generate batch 2, batch fixed at 1" "input_ids has a fixed batch of 1; this run has 2 sequences" \
  "$KVANT" generate fx/model.onnx --prompt-ids two.npy --max-new-tokens 3
# No past inputs: the whole prefix each step, same tokens, one warning.
expect_ok "generate no-past" "" "$KVANT" generate fx/nopast.onnx --prompt-ids fx/prompt.npy --max-new-tokens "$n" --print-ids
[[ "$(cat out.txt)" == "$want" ]] && pass || fail "no-past model: got '$(cat out.txt)', want '$want'"
grep -q "warning: .*no past key/value inputs" err.txt && pass || fail "no-past model gave no warning: $(cat err.txt)"
# attention_mask and position_ids fed (the model uses both).
expect_ok "generate with mask and positions" "" "$KVANT" generate fx/masked.onnx --prompt-ids fx/prompt.npy --max-new-tokens "$n" --print-ids
[[ "$(cat out.txt)" == "$want" ]] && pass || fail "attention_mask/position_ids model: got '$(cat out.txt)', want '$want'"
# Text in, text out (byte-level: the vocabulary has 512 ids).
expect_ok "generate text" "" "$KVANT" generate fx/model.onnx --prompt "Hello" --max-new-tokens 5
# Sampling: a seed gives the same tokens twice, another seed others.
s1=$("$KVANT" generate fx/model.onnx --prompt-ids fx/prompt.npy --max-new-tokens 30 --print-ids --temperature 1.5 --top-k 50 --top-p 0.95 --seed 1 2>/dev/null)
s2=$("$KVANT" generate fx/model.onnx --prompt-ids fx/prompt.npy --max-new-tokens 30 --print-ids --temperature 1.5 --top-k 50 --top-p 0.95 --seed 1 2>/dev/null)
s3=$("$KVANT" generate fx/model.onnx --prompt-ids fx/prompt.npy --max-new-tokens 30 --print-ids --temperature 1.5 --top-k 50 --top-p 0.95 --seed 2 2>/dev/null)
[[ -n "$s1" && "$s1" == "$s2" ]] && pass || fail "seed 1 twice differs: '$s1' vs '$s2'"
[[ "$s1" != "$s3" ]] && pass || fail "seeds 1 and 2 gave the same 30 tokens"

# ---- perplexity = NumPy on PyTorch's logits ---------------------------------------
check_ppl() {  # DESC KEY JSON-FILE
  if /usr/bin/python3 - "$2" "$3" <<'PY'; then pass; else fail "$1: perplexity differs from NumPy's"; fi
import json, math, sys
key, got = sys.argv[1], json.load(open(sys.argv[2]))
ctx, kind = key.rsplit(",", 1)
want = json.load(open("fx/ppl.json"))[ctx][kind]
rel = abs(got["perplexity"] - want) / want
print(f"{key}: kvant {got['perplexity']:.6f} NumPy {want:.6f} rel {rel:.2e}")
assert rel < 1e-4, rel
assert math.isfinite(got["mean_nll"]) and abs(math.exp(got["mean_nll"]) - got["perplexity"]) < 1e-6 * got["perplexity"]
if kind == "text":  # byte-level: bits per byte is the mean NLL in bits
    assert abs(got["bits_per_byte"] - got["mean_nll"] / math.log(2)) < 1e-9, got
PY
}
for w in "64 32" "50 50" "40 13"; do
  set -- $w
  for model in model nopast masked; do
    expect_ok "perplexity $model tokens $1/$2" "perplexity" "$KVANT" perplexity fx/$model.onnx --tokens fx/tokens.npy --context "$1" --stride "$2" --json
    cp out.txt p.json
    check_ppl "perplexity $model tokens $1/$2" "$1,$2,tokens" p.json
  done
  expect_ok "perplexity text $1/$2" "bits_per_byte" "$KVANT" perplexity fx/model.onnx --text fx/text.txt --context "$1" --stride "$2" --json
  cp out.txt p.json
  check_ppl "perplexity text $1/$2" "$1,$2,text" p.json
done
expect_ok "perplexity plain output" "bits per byte:" "$KVANT" perplexity fx/model.onnx --text fx/text.txt --context 64 --stride 32
grep -q "^tokens scored: " out.txt && pass || fail "no 'tokens scored' line: $(cat out.txt)"

# ---- INT4 weight-only files run and score a finite perplexity --------------------
for format in qdq ort; do
  expect_ok "quantize int4 $format" "" "$KVANT" quantize fx/model.onnx -o "q4_$format.onnx" --mode weight-only --bits 4 --group-size 32 --format "$format"
  expect_ok "perplexity int4 $format" "perplexity" "$KVANT" perplexity "q4_$format.onnx" --tokens fx/tokens.npy --context 64 --stride 32 --json
  /usr/bin/python3 -c "import json,math,sys; r=json.load(open('out.txt')); assert math.isfinite(r['perplexity']) and r['perplexity']>1, r" &&
    pass || fail "int4 $format perplexity is not finite: $(cat out.txt)"
  expect_ok "generate int4 $format" "" "$KVANT" generate "q4_$format.onnx" --prompt-ids fx/prompt.npy --max-new-tokens 8 --print-ids
done

# ---- SentencePiece (a 300-piece model trained here by spm_train) ---------------
# A sanitizer build has no SentencePiece module (CMakeLists.txt): the
# tokenizer checks then expect the "built without" error instead.
have_spm=1
printf 'probe\n' >probe.model
if "$KVANT" generate fx/model.onnx --prompt hi --max-new-tokens 1 --tokenizer probe.model 2>&1 | grep -q "built without SentencePiece"; then
  have_spm=0
  echo "note: this kvant was built without SentencePiece: tokenizer checks limited to its error"
fi
if [[ $have_spm -eq 1 ]] && command -v spm_train >/dev/null && command -v spm_encode >/dev/null; then
  head -c 100000 /usr/share/common-licenses/GPL-3 >corpus.txt
  if spm_train --input=corpus.txt --model_prefix=spm --vocab_size=300 --model_type=unigram >spm.txt 2>&1; then
    expect_ok "generate --tokenizer" "" "$KVANT" generate fx/model.onnx --prompt "the license" --max-new-tokens 6 --tokenizer spm.model
    # The same ids as spm_encode: --text with the tokenizer scores what --tokens scores.
    head -c 3000 corpus.txt >sample.txt
    spm_encode --model=spm.model --output_format=id <sample.txt | tr '\n' ' ' >ids.txt
    /usr/bin/python3 -c "import numpy as np; np.save('spm_ids.npy', np.array(open('ids.txt').read().split(), dtype=np.int64))"
    expect_ok "perplexity --tokenizer" "perplexity" "$KVANT" perplexity fx/model.onnx --text sample.txt --tokenizer spm.model --context 64 --stride 32 --json
    cp out.txt spm_text.json
    expect_ok "perplexity spm ids" "perplexity" "$KVANT" perplexity fx/model.onnx --tokens spm_ids.npy --context 64 --stride 32 --json
    /usr/bin/python3 -c "
import json, math
a, b = json.load(open('spm_text.json')), json.load(open('out.txt'))
assert a['tokens'] == b['tokens'] and a['perplexity'] == b['perplexity'], (a, b)
assert a['bytes'] == 3000 and abs(a['bits_per_byte'] - a['mean_nll'] / math.log(2) * a['tokens'] / 3000) < 1e-9, a
" && pass || fail "--text with --tokenizer differs from spm_encode's ids: $(cat spm_text.json out.txt)"
  else
    fail "spm_train: $(tail -3 spm.txt)"
  fi
else
  echo "note: spm_train missing (Debian package sentencepiece): SentencePiece checks skipped"
fi

# ---- bad input: one clear line ----------------------------------------------------
/usr/bin/python3 - <<'PY'
import numpy as np, onnx
np.save("ids_float.npy", np.zeros((1, 4), np.float32))
np.save("ids_empty.npy", np.zeros((0,), np.int64))
np.save("ids_big.npy", np.array([1, 2, 99999], np.int64))
np.save("ids_3d.npy", np.zeros((1, 1, 4), np.int64))
m = onnx.load("fx/nopast.onnx")
m.graph.output[0].name = "scores"
for node in m.graph.node:
    node.output[:] = ["scores" if o == "logits" else o for o in node.output]
onnx.save(m, "nologits.onnx")
PY
printf 'not a sentencepiece model\n' >bad.model
: >empty.txt
G=(generate fx/model.onnx --max-new-tokens 4)
expect_error "missing model" "no such file" "$KVANT" generate missing.onnx --prompt hi --max-new-tokens 4
expect_error "no logits output" 'no output named "logits"' "$KVANT" generate nologits.onnx --prompt hi --max-new-tokens 4
expect_error "float ids" "must be int64 or int32" "$KVANT" "${G[@]}" --prompt-ids ids_float.npy
expect_error "empty ids" "no token ids" "$KVANT" "${G[@]}" --prompt-ids ids_empty.npy
expect_error "3-D ids" "[n] or [1, n]" "$KVANT" "${G[@]}" --prompt-ids ids_3d.npy
expect_error "id outside the vocabulary" "outside the model's vocabulary [0, 512)" "$KVANT" "${G[@]}" --prompt-ids ids_big.npy
expect_error "empty prompt" "--prompt is empty" "$KVANT" "${G[@]}" --prompt ""
expect_error "no prompt" "--prompt TEXT or as --prompt-ids" "$KVANT" "${G[@]}"
expect_error "both prompts" "--prompt TEXT or as --prompt-ids" "$KVANT" "${G[@]}" --prompt hi --prompt-ids fx/prompt.npy
expect_error "zero new tokens" "--max-new-tokens must lie in" "$KVANT" generate fx/model.onnx --prompt hi --max-new-tokens 0
expect_error "absurd new tokens" "--max-new-tokens must lie in" "$KVANT" generate fx/model.onnx --prompt hi --max-new-tokens 99999999999
expect_error "cache over the memory budget" "more than the memory budget" "$KVANT" generate fx/model.onnx --prompt hi --max-new-tokens 1000000 --max-memory 64M
if [[ $have_spm -eq 1 ]]; then
  expect_error "not a tokenizer" "not a SentencePiece model" "$KVANT" "${G[@]}" --prompt hi --tokenizer bad.model
else
  expect_error "tokenizer in a build without SentencePiece" "built without SentencePiece" "$KVANT" "${G[@]}" --prompt hi --tokenizer bad.model
fi
expect_error "missing tokenizer" "no such file" "$KVANT" "${G[@]}" --prompt hi --tokenizer missing.model
expect_error "negative temperature" "--temperature must be" "$KVANT" "${G[@]}" --prompt hi --temperature -1
expect_error "top-p 0" "--top-p must lie in (0, 1]" "$KVANT" "${G[@]}" --prompt hi --top-p 0
expect_error "perplexity no data" "--text FILE or as --tokens" "$KVANT" perplexity fx/model.onnx
expect_error "perplexity empty text" "is empty" "$KVANT" perplexity fx/model.onnx --text empty.txt
expect_error "perplexity stride > context" "--stride must lie in" "$KVANT" perplexity fx/model.onnx --tokens fx/tokens.npy --context 8 --stride 9
expect_error "perplexity float ids" "must be int64 or int32" "$KVANT" perplexity fx/model.onnx --tokens ids_float.npy
# --metric perplexity (eval, sensitivity, accuracy target): the windows as
# eval samples [1, 32] score what `kvant perplexity --context 32 --stride 32`
# scores on the same 128 ids.
/usr/bin/python3 - <<'PY'
import os
import numpy as np
t = np.load("fx/tokens.npy").astype(np.int64)
os.makedirs("ev", exist_ok=True)
for i in range(4):
    np.save(f"ev/s{i}.npy", t[i * 32:(i + 1) * 32].reshape(1, -1))
np.save("t128.npy", t[:128])
os.makedirs("ev2", exist_ok=True)
np.save("ev2/x.npy", np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32))
PY
"$KVANT" perplexity fx/nopast.onnx --tokens t128.npy --context 32 --stride 32 --json >ppl128.json 2>/dev/null
"$KVANT" eval fx/nopast.onnx --data ev --report ev.json >/dev/null 2>&1
/usr/bin/python3 -c "
import json
a = json.load(open('ppl128.json'))['perplexity']
b = json.load(open('ev.json'))['models'][0]['perplexity']
assert abs(a - b) <= 1e-6 * a, (a, b)" && pass || fail "eval's perplexity differs from kvant perplexity's: $(cat ppl128.json ev.json 2>&1)"
expect_ok "sensitivity ranks by perplexity" "perplexity" "$KVANT" sensitivity fx/nopast.onnx --calib ev --metric perplexity
expect_ok "accuracy target in perplexity" ": met" "$KVANT" quantize fx/nopast.onnx -o pt.onnx -f --calib ev --eval ev \
  --metric perplexity --accuracy-target 5 --no-speed-check --report-samples 0
expect_error "perplexity without token ids" "needs token ids" "$KVANT" sensitivity "$ROOT/models/fashion_mnist_cnn.onnx" \
  --calib ev2 --metric perplexity

# A model that declares its position limit (gpt2_tiny: 128 position embeddings).
GPT2="$ROOT/.fixtures/gpt2_tiny/model.onnx"
if [[ -f "$GPT2" ]]; then
  expect_error "past the position limit" "position embedding" "$KVANT" generate "$GPT2" --prompt hello --max-new-tokens 124
  expect_ok "up to the position limit" "" "$KVANT" generate "$GPT2" --prompt hello --max-new-tokens 3 --print-ids
  expect_error "perplexity context past the limit" "--context 128 or less" "$KVANT" perplexity "$GPT2" --tokens fx/tokens.npy --context 256 --stride 128
else
  echo "note: .fixtures/gpt2_tiny missing: position-limit checks skipped"
fi

echo "generate_test: $passes passed, $failures failed"
[[ $failures -eq 0 ]]
