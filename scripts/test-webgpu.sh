#!/usr/bin/env bash
# The WebGPU tests on software adapters, each required to run (CUBIT_REQUIRE_WEBGPU=1: a missing
# adapter or browser fails instead of skipping): the Node test files with WebGPU cases (those that
# use test/webgpu-helpers.ts) on lavapipe and on GLES compat (through scripts/webgpu-env.sh), then
# the browser example in headless Chromium (test/browser.test.ts, SwiftShader).
# .ci/webgpu-sw-setup.sh installs all three.
#   npm run test:webgpu [-- lavapipe|gles|browser ...]     (default: all three, in that order)
set -euo pipefail
cd "$(dirname "$0")/.."
export CUBIT_REQUIRE_WEBGPU=1
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(lavapipe gles browser)
mapfile -t node_tests < <(grep -l "from './webgpu-helpers.ts'" test/*.test.ts)
for t in "${targets[@]}"; do
  start=$SECONDS
  case "$t" in
    lavapipe|gles)
      [ ${#node_tests[@]} -gt 0 ] || { echo "test-webgpu: no test file uses test/webgpu-helpers.ts" >&2; exit 1; }
      echo "test-webgpu: on $t: ${node_tests[*]}"
      bash scripts/webgpu-env.sh "$t" -- node --import tsx --test "${node_tests[@]}" ;;
    browser) node --import tsx --test test/browser.test.ts ;;
    *) echo "test-webgpu: unknown target '$t' (lavapipe, gles or browser)" >&2; exit 2 ;;
  esac
  echo "test-webgpu: $t passed in $((SECONDS - start)) s"
done
