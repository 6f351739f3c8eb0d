#!/usr/bin/env bash
# Runs a command with Dawn (the `webgpu` package) pointed at a software WebGPU adapter, as CI does;
# .ci/webgpu-sw-setup.sh installs both adapters.
#   scripts/webgpu-env.sh lavapipe -- CMD...   Vulkan on Mesa lavapipe 25 (full WebGPU: f16, subgroups),
#                                              from LAVAPIPE_DIR (default ~/.cache/webgpu-ci/lavapipe)
#   scripts/webgpu-env.sh gles -- CMD...       Dawn's OpenGL ES backend on llvmpipe (compatibility
#                                              mode: no f16, no subgroups, low limits)
# e.g. scripts/webgpu-env.sh lavapipe -- node bin/cubit.mjs info --backend webgpu
set -euo pipefail
usage="usage: scripts/webgpu-env.sh lavapipe|gles -- command [args...]"
adapter=${1:-}
[ "${2:-}" = "--" ] && [ $# -ge 3 ] || { echo "$usage" >&2; exit 2; }
shift 2
case "$adapter" in
  lavapipe)
    dir=${LAVAPIPE_DIR:-$HOME/.cache/webgpu-ci/lavapipe}
    if [ ! -s "$dir/lvp_icd.json" ]; then
      echo "webgpu-env.sh: no lavapipe at $dir (no lvp_icd.json): run 'sudo bash .ci/webgpu-sw-setup.sh $dir', or set LAVAPIPE_DIR" >&2
      exit 2
    fi
    export LD_LIBRARY_PATH="$dir/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export VK_ICD_FILENAMES="$dir/lvp_icd.json"
    unset CUBIT_WEBGPU_ADAPTER
    ;;
  gles)
    export EGL_PLATFORM=surfaceless
    export CUBIT_WEBGPU_ADAPTER=gles
    ;;
  *) echo "webgpu-env.sh: unknown adapter '$adapter'; $usage" >&2; exit 2 ;;
esac
exec "$@"
