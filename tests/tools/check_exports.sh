#!/usr/bin/env bash
# libkvant.so exports the public API of include/kvant/kvant.h and nothing
# else (CMakeLists.txt: hidden visibility + src/api/libkvant.map): every
# dynamic symbol it defines is kvant::<something> (or its typeinfo/vtable),
# none is an internal one (kvant::Graph, kvant::CompiledModel, ...), and the
# entry points programs need are there.
#   check_exports.sh LIBKVANT.so
set -euo pipefail
lib=${1:?LIBKVANT.so}
symbols=$(nm -D --defined-only "$lib" | awk '{ $1 = ""; $2 = ""; sub(/^  /, ""); print }' | c++filt)
status=0
outside=$(grep -Ev '^((typeinfo|typeinfo name|vtable) for )?kvant::' <<<"$symbols" || true)
if [[ -n $outside ]]; then
  echo "FAIL: symbols outside namespace kvant are exported:"
  echo "$outside" | head -20
  status=1
fi
# Public names are those declared in kvant.h.
public='kvant::(version|data_type_name|byte_size|check_input|load_npy|save_npy|quantize_static|quantize_dynamic|quantize_weight_only|sensitivity|metric_name|progress_stage_name|model_stats|type_to_string|step_kind_name|decoder_info|perplexity_windows|next_token_nll)(\[abi:cxx11\])?\(|kvant::(OwnedTensor|OnnxModel|Session|CalibrationDataReader|Decoder|Sampler)(::|$)'
internal=$(grep -Ev "$public" <<<"$(sed -E 's/^(typeinfo name|typeinfo|vtable) for //' <<<"$symbols")" || true)
if [[ -n $internal ]]; then
  echo "FAIL: internal kvant symbols are exported:"
  echo "$internal" | head -20
  status=1
fi
for needed in 'kvant::OnnxModel::load(' 'kvant::Session::create(' 'kvant::Session::run(' 'kvant::Decoder::forward(' 'kvant::quantize_static(' 'kvant::sensitivity(' \
  'typeinfo for kvant::CalibrationDataReader'; do
  if ! grep -qF "$needed" <<<"$symbols"; then
    echo "FAIL: $needed is not exported"
    status=1
  fi
done
[[ $status -eq 0 ]] && echo "ok: $(wc -l <<<"$symbols") exported symbols, all of the public API"
exit $status
