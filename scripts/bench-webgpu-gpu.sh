#!/usr/bin/env bash
# cubit on the webgpu backend beside PyTorch, in one run on one GPU: the figures of issue 13's
# benchmark targets, every cubit figure next to PyTorch's from the same run, and the GPU model.
#
#   source .device-kit/activate.sh && scripts/bench-webgpu-gpu.sh [out-dir]     (the GPU machine; default runs/bench-webgpu)
#   scripts/bench-webgpu-gpu.sh --quick [out-dir]          tiny sizes: a smoke test of the script on a
#                                                          software adapter (lavapipe) and PyTorch on the CPU
# Parts, in this order, each under its own time cap (so one slow part cannot eat the others' time)
# and all within BUDGET seconds:
#   probe          `cubit info --backend webgpu` (adapter, features, limits); if Dawn finds no Vulkan
#                  driver, the loader packages of .device-kit/debs are unpacked into / and tried again
#   cubit-ops      `cubit bench ops --sizes 4096 --filter sgemm`                fp32 matmul 4096²
#   torch-kernels  scripts/bench-torch-kernels.py: the same matmul (TF32 off), and the mixers
#   cubit-mixer-T  `cubit bench mixer --shapes 8x8xTx64`, T = 1024, 4096, 8192, 32768 (cubit and softmax)
#   cubit-train-T  `cubit bench train --model 512x8x8x2048 --shapes TxB`, T=1024 B=32 and T=4096 B=8
#   torch-lm       scripts/bench-torch-gpu.sh (python/train_torch.py, TF32 off): the same LMs in PyTorch
# then scripts/bench-webgpu-compare.py pairs the two sides (compare.jsonl).
# Every line is JSON; each part's lines are kept in out-dir/<part>.jsonl, stderr in <part>.err. A
# part that fails or runs out of time leaves a line {"part", "exit", "stderr"} and the run goes on.
#
# env: BUDGET (540: seconds for the whole run; the device call allows 600 with the kit's set-up),
# PYTHON (python3, with PyTorch), TORCH_DEVICE (cuda, or cpu when --quick finds no GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
OUT=${1:-runs/bench-webgpu}
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-540}
mkdir -p "$OUT"
start=$SECONDS
cubit=(node bin/cubit.mjs)

if [ $quick = 1 ]; then
  SIZES=128; MIXER_T="64 128"; MIXER_BHD=(1 2 16); MODEL=32x1x2x64; TRAIN="32x2 64x2"
  LM=(D=32 LAYERS=1 HEADS=2 FFN=64 SHAPES=32x2,64x2 STEPS=3); TORCH_MIN_MS=100
  TORCH_DEVICE=${TORCH_DEVICE:-$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")' 2>/dev/null || echo cpu)}
else
  SIZES=4096; MIXER_T="1024 4096 8192 32768"; MIXER_BHD=(8 8 64); MODEL=512x8x8x2048; TRAIN="1024x32 4096x8"
  LM=(D=512 LAYERS=8 HEADS=8 FFN=2048 SHAPES=1024x32,4096x8 STEPS=6); TORCH_MIN_MS=1000
  TORCH_DEVICE=${TORCH_DEVICE:-cuda}
fi
B=${MIXER_BHD[0]}; H=${MIXER_BHD[1]}; D=${MIXER_BHD[2]}
shapes=""; for T in $MIXER_T; do shapes+="${shapes:+,}${B}x${H}x${T}x${D}"; done

# part NAME CAP RESERVE command…: runs the command for at most CAP seconds, and never into the last
# RESERVE seconds of the budget (kept for the parts after it); its stdout is shown and kept.
part() {
  local name=$1 cap=$2 reserve=$3; shift 3
  local left=$(( BUDGET - (SECONDS - start) - reserve ))
  local t=$(( cap < left ? cap : left ))
  if (( t < 5 )); then echo "{\"part\":\"$name\",\"skipped\":\"no time left in the budget of ${BUDGET} s\"}" | tee -a "$OUT/$name.jsonl"; return 1; fi
  local t0=$SECONDS
  timeout -k 10 "$t" "$@" 2> "$OUT/$name.err" | tee -a "$OUT/$name.jsonl"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" != 0 ]; then
    local why; why=$(grep -v '^Warning: ' "$OUT/$name.err" | tail -1 | tr -d '"\\' | cut -c1-200)
    [ "$rc" = 124 ] && why="timed out after ${t} s; ${why}"
    echo "{\"part\":\"$name\",\"exit\":$rc,\"seconds\":$(( SECONDS - t0 )),\"stderr\":\"$why\"}" | tee -a "$OUT/$name.jsonl"
  fi
  return "$rc"
}

# ---- the machine ----
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1 | tr -d '"\\')
echo "{\"machine\":{\"gpu\":\"${gpu:-none}\",\"node\":\"$(node --version)\",\"quick\":$quick,\"budget_s\":$BUDGET}}" | tee "$OUT/machine.jsonl"
if ! part probe 30 400 "${cubit[@]}" info --backend webgpu; then
  # The fix seen on the H100 machine: Dawn finds no Vulkan instance until the loader packages are
  # installed system-wide (the NVIDIA ICD loads libGLX_nvidia, which needs libglvnd's libraries).
  if [ $quick = 0 ] && [ -d .device-kit/debs ] && [ -w / ]; then
    for f in .device-kit/debs/*.deb; do dpkg -x "$f" /; done
    ldconfig 2>/dev/null
    export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
    export LD_LIBRARY_PATH=/usr/local/nvidia/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    part probe 30 400 "${cubit[@]}" info --backend webgpu
  fi
fi

# ---- matmul, then the mixers, then the language models: cubit's side, then PyTorch's ----
# Caps sum to more than the budget; the reserves keep for each later part at least: torch-kernels
# 80 s, each mixer length 30 s, each training shape 50 s, torch-lm 100 s.
part cubit-ops 30 400 "${cubit[@]}" bench ops --backend webgpu --sizes "$SIZES" --filter sgemm
part torch-kernels 120 320 "$PY" scripts/bench-torch-kernels.py --device "$TORCH_DEVICE" --sizes "$SIZES" --shapes "$shapes" --min-ms "$TORCH_MIN_MS"
caps=(40 50 60 60); i=0; later=0; for T in $MIXER_T; do later=$((later + 1)); done
for T in $MIXER_T; do
  later=$((later - 1))
  part "cubit-mixer-$T" "${caps[$i]:-60}" $(( 200 + 30 * later )) "${cubit[@]}" bench mixer --backend webgpu --shapes "${B}x${H}x${T}x${D}"
  i=$((i + 1))
done
reserve=150
for shape in $TRAIN; do
  part "cubit-train-${shape%x*}" 70 $reserve "${cubit[@]}" bench train --backend webgpu --model "$MODEL" --shapes "$shape" --filter train
  reserve=100
done
part torch-lm 130 5 env "${LM[@]}" TF32=0 DEVICE="$TORCH_DEVICE" PYTHON="$PY" scripts/bench-torch-gpu.sh "$OUT/torch-lm"

"$PY" scripts/bench-webgpu-compare.py "$OUT" | tee "$OUT/compare.jsonl"
echo "{\"done\":true,\"seconds\":$(( SECONDS - start )),\"out\":\"$OUT\"}"
