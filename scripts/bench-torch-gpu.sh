#!/usr/bin/env bash
# train_torch.py on a GPU beside the dense-formula PyTorch anchor, in one run on one machine:
# tokens/s and peak memory of the d=512, 8-layer, 8-head byte model (SwiGLU 2048) at T = 1024
# (B 32) and T = 4096 (B 8): softmax, Cubit with the block-streamed solve, and Cubit with the dense
# solve of the same module (the streamed one must fit where the dense one does not). Needs only Python with PyTorch (no node): the model
# is initialised from a config.json written here (random init, synthetic tokens).
#
#   scripts/bench-torch-gpu.sh [out-dir]      (env: PYTHON, ANCHOR, BLOCK, STEPS, TF32=0 for full fp32)
#
# Prints JSON lines and keeps them in out-dir/train_torch.jsonl and out-dir/anchor.jsonl.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-bench-torch-out}}
PY=${PYTHON:-python3}
ANCHOR=${ANCHOR:-../shared/anchors/torch_lm_anchor.py}
BLOCK=${BLOCK:-64}
STEPS=${STEPS:-6}
mkdir -p "$OUT"
: > "$OUT/train_torch.jsonl"
"$PY" -c 'import torch, json; print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}))' | tee "$OUT/machine.json"
tf32=(); [ "${TF32:-1}" = 0 ] && tf32=(--no-tf32)
for mixer in softmax cubit; do
  printf '{"model":{"vocabSize":256,"dModel":512,"nLayers":8,"nHeads":8,"ffnHidden":2048,"mixer":"%s","blockSize":%s}}\n' "$mixer" "$BLOCK" > "$OUT/$mixer.json"
done
for shape in 1024x32 4096x8; do
  T=${shape%x*}; B=${shape#*x}
  for run in softmax:stream cubit:stream cubit:dense; do
    mixer=${run%:*}; solve=${run#*:}
    "$PY" python/train_torch.py --from "$OUT/$mixer.json" --synthetic --bench --device cuda "${tf32[@]}" --solve "$solve" \
      --steps "$STEPS" --warmup-steps 1 --batch-size "$B" --seq-len "$T" 2> "$OUT/err-$mixer-$solve-$T.txt" | tee -a "$OUT/train_torch.jsonl" \
      || echo "{\"trainer\":\"train_torch.py\",\"mixers\":\"$mixer\",\"solve\":\"$solve\",\"T\":$T,\"B\":$B,\"error\":\"$(tail -1 "$OUT/err-$mixer-$solve-$T.txt" | tr -d '"\\' | cut -c1-160)\"}" | tee -a "$OUT/train_torch.jsonl"
  done
done
if [ -f "$ANCHOR" ]; then
  DEVICE=cuda D=512 LAYERS=8 HEADS=8 FFN=2048 SHAPES=1024x32,4096x8 TF32=${TF32:-1} "$PY" "$ANCHOR" | tee "$OUT/anchor.jsonl"
else
  echo "{\"anchor\":\"$ANCHOR not found; set ANCHOR=path/to/torch_lm_anchor.py\"}" | tee "$OUT/anchor.jsonl"
fi
