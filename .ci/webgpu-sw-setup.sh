#!/usr/bin/env bash
# Installs software WebGPU adapters for CI on Debian 12 (bookworm), no GPU, as root. Idempotent.
# Run it (don't source it):  bash .ci/webgpu-sw-setup.sh [LAVAPIPE_DIR]
# then run tests through scripts/webgpu-env.sh (same LAVAPIPE_DIR), e.g. `npm run test:webgpu`.
#  - Dawn/Vulkan on Mesa lavapipe 25.x: bookworm-backports .debs unpacked into LAVAPIPE_DIR
#    (private apt state; system apt sources and the installed Mesa 22.3.6 stay untouched).
#  - Dawn/OpenGL ES compat on stock llvmpipe 22.3.6: EGL from bookworm main, incl. libegl-dev
#    (Dawn dlopens the unversioned "libEGL.so").
#  - chromium (bookworm-security) for the browser test (SwiftShader WebGPU).
set -euo pipefail
LAVAPIPE_DIR=${1:-${LAVAPIPE_DIR:-$HOME/.cache/webgpu-ci/lavapipe}}
libdir=usr/lib/x86_64-linux-gnu
export DEBIAN_FRONTEND=noninteractive

# 1) bookworm main; --no-upgrade so already-installed libs are not bumped
apt-get update -qq
apt-get install -y -qq --no-install-recommends --no-upgrade \
  libegl1 libegl-mesa0 libgl1-mesa-dri libegl-dev \
  libllvm15 libelf1 libzstd1 libexpat1 libx11-xcb1 libxcb-dri3-0 libxcb-present0 libxcb-randr0 \
  libxcb-shm0 libxcb-sync1 libxcb-xfixes0 libxshmfence1 libwayland-client0 \
  chromium >/dev/null

# 2) lavapipe from bookworm-backports, via a private apt config on the mirror host already configured
if [ ! -s "$LAVAPIPE_DIR/lvp_icd.json" ]; then
  mirror=$(awk '/^URIs:/{for(i=2;i<=NF;i++) if ($i ~ /\/debian\/?$/) {print $i; exit}}' \
             /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
  [ -n "$mirror" ] || mirror=$(awk '$1=="deb" && / bookworm /{for(i=2;i<=NF;i++) if ($i ~ /^https?:/){print $i; exit}}' \
             /etc/apt/sources.list 2>/dev/null | head -n1 || true)
  [ -n "$mirror" ] || { echo "no Debian mirror found in /etc/apt/sources.list*" >&2; exit 1; }
  tmp=$(mktemp -d); mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
  key=/usr/share/keyrings/debian-archive-keyring.gpg
  printf 'deb [signed-by=%s] %s bookworm main\ndeb [signed-by=%s] %s bookworm-backports main\n' \
    "$key" "$mirror" "$key" "$mirror" > "$tmp/sources.list"
  apt=(-qq -o Dir::Etc::SourceList="$tmp/sources.list" -o Dir::Etc::SourceParts=/nonexistent
       -o Dir::State::Lists="$tmp/lists" -o Dir::Cache="$tmp/cache" -o APT::Sandbox::User=root)
  apt-get "${apt[@]}" update
  (cd "$tmp" && apt-get "${apt[@]}" download libvulkan1 mesa-vulkan-drivers/bookworm-backports)
  mkdir -p "$LAVAPIPE_DIR"
  for d in "$tmp"/*.deb; do dpkg -x "$d" "$LAVAPIPE_DIR"; echo "unpacked $(basename "$d")"; done
  printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s/%s/libvulkan_lvp.so","api_version":"1.3.0"}}\n' \
    "$LAVAPIPE_DIR" "$libdir" > "$LAVAPIPE_DIR/lvp_icd.json"
  rm -rf "$tmp"
fi
echo "lavapipe ready: $LAVAPIPE_DIR/lvp_icd.json"
