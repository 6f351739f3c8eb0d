#!/usr/bin/env bash
# train_torch.py on a GPU beside the dense-formula PyTorch anchor, in one run on one machine:
# tokens/s and peak memory of the d=512, 8-layer, 8-head byte model (SwiGLU 2048) at T = 1024
# (B 32) and T = 4096 (B 8): softmax, Cubit with the block-streamed solve, and Cubit with the dense
# solve of the same module (the streamed one must fit where the dense one does not). Needs only
# Python with PyTorch (no node): the model is initialised from a config.json written here (random
# init, synthetic tokens).
#
#   ANCHOR=path/to/torch_lm_anchor.py scripts/bench-torch-gpu.sh [out-dir]
#
# env: PYTHON (python3), ANCHOR (../shared/anchors/torch_lm_anchor.py), BLOCK (64: rows per block of
# the streamed solve), STEPS (6, the first untimed), TF32 (1; 0 for full fp32 matmuls), and for a
# smaller smoke run DEVICE (cuda), D, LAYERS, HEADS, FFN, SHAPES (TxB,TxB) as the anchor takes them.
# Prints JSON lines and keeps them in out-dir/train_torch.jsonl and out-dir/anchor.jsonl.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-bench-torch-out}}
PY=${PYTHON:-python3}
ANCHOR=${ANCHOR:-../shared/anchors/torch_lm_anchor.py}
BLOCK=${BLOCK:-64}
STEPS=${STEPS:-6}
DEVICE=${DEVICE:-cuda}
D=${D:-512}; LAYERS=${LAYERS:-8}; HEADS=${HEADS:-8}; FFN=${FFN:-2048}; SHAPES=${SHAPES:-1024x32,4096x8}
mkdir -p "$OUT"
: > "$OUT/train_torch.jsonl"
"$PY" -c 'import torch, json; print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}))' | tee "$OUT/machine.json"
tf32=(); [ "${TF32:-1}" = 0 ] && tf32=(--no-tf32)
for mixer in softmax cubit; do
  printf '{"model":{"vocabSize":256,"dModel":%s,"nLayers":%s,"nHeads":%s,"ffnHidden":%s,"mixer":"%s","blockSize":%s}}\n' \
    "$D" "$LAYERS" "$HEADS" "$FFN" "$mixer" "$BLOCK" > "$OUT/$mixer.json"
done
for shape in ${SHAPES//,/ }; do
  T=${shape%x*}; B=${shape#*x}
  for run in softmax:stream cubit:stream cubit:dense; do
    mixer=${run%:*}; solve=${run#*:}
    err="$OUT/err-$mixer-$solve-$T.txt"
    "$PY" python/train_torch.py --from "$OUT/$mixer.json" --synthetic --bench --device "$DEVICE" "${tf32[@]}" --solve "$solve" \
      --steps "$STEPS" --warmup-steps 1 --batch-size "$B" --seq-len "$T" 2> "$err" | tee -a "$OUT/train_torch.jsonl"
    if [ "${PIPESTATUS[0]}" != 0 ]; then
      echo "{\"trainer\":\"train_torch.py\",\"mixers\":\"$mixer\",\"solve\":\"$solve\",\"T\":$T,\"B\":$B,\"error\":\"$(tail -1 "$err" | tr -d '"\\' | cut -c1-200)\"}" | tee -a "$OUT/train_torch.jsonl"
    fi
  done
done
if [ -f "$ANCHOR" ]; then
  DEVICE=$DEVICE D=$D LAYERS=$LAYERS HEADS=$HEADS FFN=$FFN SHAPES=$SHAPES TF32=${TF32:-1} "$PY" "$ANCHOR" | tee "$OUT/anchor.jsonl"
else
  echo "{\"anchor\":\"$ANCHOR not found; set ANCHOR=path/to/torch_lm_anchor.py\"}" | tee "$OUT/anchor.jsonl"
fi
