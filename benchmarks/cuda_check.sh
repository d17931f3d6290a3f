#!/usr/bin/env bash
# One-command CUDA check for a GPU machine that has PyTorch (python3 -c 'import torch') but no Node and no
# network: builds the addon against that machine's torch, runs a CUDA subset (bf16 autocast + channels_last
# fit, checkpoint round trip, fp16 with the grad scaler, device errors), then the training-throughput
# benchmark on CUDA against PyTorch eager with the same AMP settings, the ONNX export of a CUDA-trained model
# (parity vs libtorch CUDA) and the ONNX benchmark (ORT CPU vs libtorch CUDA), and prints one table. ~4–8 minutes.
#
# 1. Prepare, on a machine with Node ≥ 20 and this repo's node_modules (npm ci) — writes the ignored folder
#    .cache/cuda-check/ (~30 MB):
#        bash benchmarks/cuda_check.sh --prepare
#    which is, by hand:
#        mkdir -p .cache/cuda-check && xz -T2 -9 -c "$(command -v node)" > .cache/cuda-check/node.xz
#        + an xz tarball of the node_modules packages the check needs (cmake-js, node-addon-api,
#          node-api-headers, node-gyp-build, tsx and their dependencies): .cache/cuda-check/node_modules.tar.xz
# 2. Run, on the GPU machine, from a copy of the repo that has .cache/cuda-check/:
#        bash benchmarks/cuda_check.sh
#    With the workplace's device tool: run(command="bash benchmarks/cuda_check.sh", carry=[".cache/cuda-check"]).
#
# Options: --prepare | --cpu (dry run without a GPU: CPU device, fp32/bf16, no fp16, a 1-config benchmark)
#          --skip-build (use an addon already built in $HEIMDALL_CUDA_BUILD) | --configure-only
#          --no-bench | --bench-args "…" (passed to train_throughput.ts)
# Env: HEIMDALL_CUDA_CACHE (.cache/cuda-check), HEIMDALL_CUDA_BUILD (build-cuda), PYTHON (python3), OUT
#      (where logs go, if set: the device tool's $OUT), HEIMDALL_CUDA_USE_CARRIED_NODE=1 (unpack the carried
#      Node even when one is on PATH; with no node_modules folder, unpack that too: for dry runs).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${HEIMDALL_CUDA_CACHE:-$ROOT/.cache/cuda-check}"
BUILD="${HEIMDALL_CUDA_BUILD:-build-cuda}"
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
PYTHON="${PYTHON:-python3}"
LOGDIR="${OUT:-$BUILD/logs}"

MODE=run CPU=0 SKIP_BUILD=0 CONFIGURE_ONLY=0 BENCH=1 BENCH_ARGS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prepare) MODE=prepare ;;
    --cpu) CPU=1 ;;
    --skip-build) SKIP_BUILD=1 ;;
    --configure-only) CONFIGURE_ONLY=1 ;;
    --no-bench) BENCH=0 ;;
    --bench-args) BENCH_ARGS="$2"; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "cuda_check: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

NM_PACKAGES="cmake-js node-addon-api node-api-headers node-gyp-build tsx onnxruntime-node zod"

# ---- prepare (here) ------------------------------------------------------------------------------------
if [ "$MODE" = prepare ]; then
  command -v node >/dev/null || { echo "cuda_check --prepare: needs node on PATH" >&2; exit 1; }
  for p in $NM_PACKAGES; do
    [ -f "node_modules/$p/package.json" ] || { echo "cuda_check --prepare: node_modules/$p missing: run npm ci first" >&2; exit 1; }
  done
  mkdir -p "$CACHE"
  echo "node $(node --version) → $CACHE/node.xz"
  xz -T2 -9 -c "$(command -v node)" > "$CACHE/node.xz.tmp" && mv "$CACHE/node.xz.tmp" "$CACHE/node.xz"
  # The dependency closure of the packages the check needs, resolved the way Node resolves them.
  node - "$NM_PACKAGES" > "$CACHE/node_modules.list" <<'EOF'
const { existsSync, readFileSync, realpathSync } = require('node:fs');
const { dirname, join, relative } = require('node:path');
const root = process.cwd();
const seen = new Set();
function find(name, from) {
  for (let dir = from; ; dir = dirname(dir)) {
    const p = join(dir, 'node_modules', name);
    if (existsSync(join(p, 'package.json'))) return p;
    if (dir === dirname(dir)) return null;
  }
}
function walk(dir) {
  const real = realpathSync(dir);
  if (seen.has(real)) return;
  seen.add(real);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const deps = { ...pkg.dependencies, ...pkg.optionalDependencies };
  for (const d of Object.keys(deps)) {
    const p = find(d, dir);
    if (p) walk(p);
    else if (!(pkg.optionalDependencies || {})[d]) console.error(`warning: ${d} (needed by ${pkg.name}) not found`);
  }
}
for (const name of process.argv[2].split(' ')) walk(join(root, 'node_modules', name));
for (const p of [...seen].sort()) console.log(relative(root, p));
EOF
  # .bin links are recreated on the other side; the packages travel as files.
  # onnxruntime-node ships binaries for every platform: only linux-x64's travel.
  tar -cf - --exclude='node_modules/onnxruntime-node/bin/*/darwin' --exclude='node_modules/onnxruntime-node/bin/*/win32' \
    --exclude='node_modules/onnxruntime-node/bin/*/linux/arm64' -T "$CACHE/node_modules.list" | xz -T2 -9 > "$CACHE/node_modules.tar.xz.tmp"
  mv "$CACHE/node_modules.tar.xz.tmp" "$CACHE/node_modules.tar.xz"
  echo "$(wc -l < "$CACHE/node_modules.list") packages → $CACHE/node_modules.tar.xz"
  du -sh "$CACHE"/node.xz "$CACHE"/node_modules.tar.xz
  exit 0
fi

# ---- run (on the GPU machine) -------------------------------------------------------------------------
mkdir -p "$LOGDIR"
T0=$(date +%s)
declare -a ROWS=()
row() { ROWS+=("$(printf '| %-44s | %-6s | %s |' "$1" "$2" "$3")"); echo ">> $1: $2 $3"; }
summary() {
  echo
  echo "==== heimdall-torch CUDA check ($(( $(date +%s) - T0 )) s) ===="
  printf '| %-44s | %-6s | %s |\n' check result detail
  printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "--------" "--------"
  for r in "${ROWS[@]}"; do echo "$r"; done
  if [ -f "$LOGDIR/onnx.txt" ]; then echo; sed -n '/^ONNX export + inference/,$p' "$LOGDIR/onnx.txt"; fi
  if [ -f "$LOGDIR/throughput.txt" ]; then echo; sed -n '/^Training-step throughput/,$p' "$LOGDIR/throughput.txt"; fi
} 
trap summary EXIT

unxz_to() {  # unxz_to FILE.xz DEST: xz if there is one, else Python's lzma
  if command -v xz >/dev/null; then xz -dc "$1" > "$2"; else "$PYTHON" -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$1" "$2"; fi
}

# Node: the one on PATH if it is ≥ 20, else the carried binary.
NODE_OK=0
if [ "${HEIMDALL_CUDA_USE_CARRIED_NODE:-0}" != 1 ] && command -v node >/dev/null && node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null; then NODE_OK=1; fi
if [ $NODE_OK = 0 ]; then
  [ -f "$CACHE/node.xz" ] || { row "node" FAIL "no node ≥ 20 on PATH and no $CACHE/node.xz (run --prepare where Node is)"; exit 1; }
  mkdir -p "$ROOT/.cache/node-bin"
  unxz_to "$CACHE/node.xz" "$ROOT/.cache/node-bin/node"
  chmod +x "$ROOT/.cache/node-bin/node"
  export PATH="$ROOT/.cache/node-bin:$PATH"
fi
row "node" ok "$(node --version) ($(command -v node))"

# node_modules: the checkout's if it has what we need, else the carried tarball.
NEED_NM=0
for p in $NM_PACKAGES; do [ -f "node_modules/$p/package.json" ] || NEED_NM=1; done
[ "${HEIMDALL_CUDA_USE_CARRIED_NODE:-0}" = 1 ] && [ ! -d node_modules ] && NEED_NM=1
if [ $NEED_NM = 1 ]; then
  [ -f "$CACHE/node_modules.tar.xz" ] || { row "node_modules" FAIL "missing and no $CACHE/node_modules.tar.xz"; exit 1; }
  if command -v xz >/dev/null; then xz -dc "$CACHE/node_modules.tar.xz" | tar -xf -; else
    "$PYTHON" -c 'import tarfile,sys; tarfile.open(sys.argv[1]).extractall(".")' "$CACHE/node_modules.tar.xz"; fi
  row "node_modules" ok "unpacked $(wc -l < "$CACHE/node_modules.list" 2>/dev/null || echo '?') packages from the cache"
else
  row "node_modules" ok "from the checkout"
fi

TORCH_INFO=$("$PYTHON" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>&1) \
  || { row "python torch" FAIL "$TORCH_INFO"; exit 1; }
row "python torch" ok "$TORCH_INFO"
if [ $CPU = 0 ] && ! "$PYTHON" -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  row "CUDA device" FAIL "torch sees no GPU (use --cpu for a dry run)"; exit 1
fi

# Build against this machine's torch: FindLibtorch takes .venv's torch when the checkout has one, else
# python3's; LIBTORCH=… overrides. cmake-js builds offline (package.json binary.napi_versions).
ADDON="$BUILD/Release/heimdall_torch.node"
if [ $SKIP_BUILD = 0 ]; then
  if [ -z "${LIBTORCH:-}" ] && [ ! -x "$ROOT/.venv/bin/python" ] && [ "$(command -v python3 || true)" != "$(command -v "$PYTHON")" ]; then
    # FindLibtorch asks `python3`; make that $PYTHON (a wrapper, not a link: a link would lose a venv).
    mkdir -p "$ROOT/.cache/py-bin"
    printf '#!/bin/sh\nexec "%s" "$@"\n' "$(command -v "$PYTHON")" > "$ROOT/.cache/py-bin/python3"
    chmod +x "$ROOT/.cache/py-bin/python3"
    export PATH="$ROOT/.cache/py-bin:$PATH"
  fi
  GEN=()
  if ! command -v make >/dev/null && command -v ninja >/dev/null; then GEN=(-G Ninja); fi
  export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
  B0=$(date +%s)
  if [ $CONFIGURE_ONLY = 1 ]; then
    if node node_modules/cmake-js/bin/cmake-js configure --out "$BUILD" "${GEN[@]}" > "$LOGDIR/build.log" 2>&1; then
      row "addon configure (cmake-js)" ok "$(grep -o 'libtorch [^ ]* from.*' "$LOGDIR/build.log" | head -1)"
    else
      row "addon configure (cmake-js)" FAIL "see $LOGDIR/build.log"; tail -30 "$LOGDIR/build.log"; exit 1
    fi
    exit 0
  fi
  if node node_modules/cmake-js/bin/cmake-js compile --out "$BUILD" "${GEN[@]}" > "$LOGDIR/build.log" 2>&1; then
    row "addon build (cmake-js)" ok "$(( $(date +%s) - B0 )) s; built against $(node -p "const l = require(process.argv[1]).libtorch; \`libtorch \${l.full} (\${l.cudaBuild ? 'CUDA ' + l.cudaVersion : 'CPU'}) from \${l.source}\`" "$BUILD/Release/heimdall_torch.json" 2>/dev/null)"
  else
    row "addon build (cmake-js)" FAIL "see $LOGDIR/build.log"; tail -40 "$LOGDIR/build.log"; exit 1
  fi
fi
[ -f "$ADDON" ] || { row "addon" FAIL "$ADDON not found"; exit 1; }
export HEIMDALL_TORCH_ADDON="$ADDON"
# The addon has no RUNPATH: lib/loader/libtorch.ts finds libtorch at run time. Point it at the torch the build
# used (recorded in heimdall_torch.json next to the addon) unless LIBTORCH is set already.
if [ -z "${LIBTORCH:-}" ] && [ -f "$BUILD/Release/heimdall_torch.json" ]; then
  LIBTORCH=$(node -p "require(process.argv[1]).libtorch.root" "$BUILD/Release/heimdall_torch.json")
  export LIBTORCH
fi
export PYTHON
if LOADED=$(cd "$ROOT" && node --import tsx --input-type=module -e "const { native } = await import('./lib/native.ts'); const { loadedLibtorch } = await import('./lib/loader/libtorch.ts'); const i = native().torchInfo(); const l = loadedLibtorch(); console.log(\`libtorch \${i.libtorch} from \${l?.candidate?.source ?? '?'}: \${l?.libtorch ?? '?'}\`)" 2>&1); then
  row "addon loads (runtime libtorch discovery)" ok "$(echo "$LOADED" | tail -1)"
else
  row "addon loads (runtime libtorch discovery)" FAIL "$(echo "$LOADED" | tr '\n' ' ' | cut -c1-400)"; exit 1
fi

# ---- the CUDA subset: plain Node over the built addon (no test runner needed) ----------------------------
SUBSET="$BUILD/cuda_subset.mjs"
cat > "$SUBSET" <<'EOF'
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
// Through the package's loader (HEIMDALL_TORCH_ADDON + runtime libtorch discovery), as users load it.
const { native } = await import(pathToFileURL(join(process.env.HEIMDALL_ROOT, 'lib', 'native.ts')).href);
const addon = native();
const cpuOnly = process.env.CUDA_CHECK_CPU === '1';
const device = cpuOnly ? 'cpu' : 'cuda';
const results = [];
async function check(name, fn) {
  const t0 = performance.now();
  try {
    const detail = await fn();
    results.push({ name, ok: true, detail: `${detail ?? ''} (${((performance.now() - t0) / 1000).toFixed(1)} s)` });
  } catch (e) {
    results.push({ name, ok: false, detail: String(e && e.stack || e).split('\n').slice(0, 3).join(' ⏎ ') });
  }
}
const assert = (c, msg) => { if (!c) throw new Error(msg); };
// A learnable task: the target is the centre of a bright blob (normalised to [-1, 1]).
function blobs(n, seed, h = 64, w = 64) {
  let s = seed >>> 0;
  const r = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
  const x = new Float32Array(n * 3 * h * w), y = new Float32Array(n * 2);
  for (let i = 0; i < n; i++) {
    const cy = 6 + r() * (h - 12), cx = 6 + r() * (w - 12);
    y[2 * i] = (cy - h / 2) / (h / 2); y[2 * i + 1] = (cx - w / 2) / (w / 2);
    for (let c = 0; c < 3; c++) for (let yy = 0; yy < h; yy++) for (let xx = 0; xx < w; xx++)
      x[((i * 3 + c) * h + yy) * w + xx] = 2 * Math.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 12) + 0.1 * (r() - 0.5);
  }
  return addon.tensorDataset(x, [n, 3, h, w], y, [n, 2]);
}
const info = addon.torchInfo();
await check('torchInfo', async () => {
  if (!cpuOnly) assert(info.cudaAvailable && info.cudaDeviceCount > 0, `CUDA not available: ${JSON.stringify(info)}`);
  return `libtorch ${info.libtorch}, CUDA ${info.cudaRuntime}, cuDNN ${info.cudnn}, ${JSON.stringify(info.cudaDevices)}`;
});
const train = blobs(cpuOnly ? 256 : 512, 1), val = blobs(128, 2);
const dir = mkdtempSync(join(tmpdir(), 'heimdall-cuda-'));
const precision = cpuOnly ? '32' : 'bf16-mixed';
let engine, model;
await check(`fit ${device} ${precision} channels_last (atto, loss falls)`, async () => {
  model = new addon.Model({ variant: 'atto', head: 'localization', seed: 3 });
  engine = new addon.Engine(model, { device, precision, channelsLast: true, seed: 3, optimizer: { name: 'adamw', lr: 3e-3 }, schedule: { warmupSteps: 10 } });
  assert(engine.device.startsWith(device), `engine.device ${engine.device}`);
  const before = await engine.evaluate(val, { batchSize: 64 });
  let last;
  for (let e = 0; e < 6; e++) last = await engine.trainEpoch(train, { batchSize: 32, maxEpochs: 6 });
  const after = await engine.evaluate(val, { batchSize: 64 });
  assert(Number.isFinite(after.metrics.loss), 'non-finite loss');
  assert(after.metrics.mae < before.metrics.mae / 1.5, `val MAE ${before.metrics.mae.toFixed(3)} → ${after.metrics.mae.toFixed(3)} (want ÷1.5)`);
  return `val MAE ${before.metrics.mae.toFixed(3)} → ${after.metrics.mae.toFixed(3)}, ${last.samplesPerSec.toFixed(0)} img/s`;
});
await check('checkpoint round trip (save → load → same outputs, same next epoch)', async () => {
  assert(engine, 'no engine from the fit');
  const ckpt = join(dir, 'ckpt.safetensors');
  await engine.saveCheckpoint(ckpt, JSON.stringify({ k: 1 }));
  const m2 = new addon.Model({ variant: 'atto', head: 'localization', seed: 99 });
  const e2 = new addon.Engine(m2, { device, precision, channelsLast: true, seed: 3, optimizer: { name: 'adamw', lr: 3e-3 }, schedule: { warmupSteps: 10 } });
  const user = await e2.loadCheckpoint(ckpt);
  assert(JSON.parse(user).k === 1, 'user state lost');
  assert(e2.step === engine.step && e2.epoch === engine.epoch, `counters ${e2.epoch}/${e2.step} vs ${engine.epoch}/${engine.step}`);
  const a = await engine.predict(val), b = await e2.predict(val);
  let d = 0;
  for (const k of Object.keys(a)) for (let i = 0; i < a[k].data.length; i++) d = Math.max(d, Math.abs(a[k].data[i] - b[k].data[i]));
  assert(d <= 1e-5, `outputs differ by ${d}`);
  // One more epoch each. The RNG (dropout in the heads) is process-wide, so reload right before e2's epoch:
  // that restores the generator state saved with the checkpoint, as a resumed run would have it.
  const la = [], lb = [];
  await engine.trainEpoch(train, { batchSize: 32, maxEpochs: 7 }, (e) => la.push(e.metrics.loss));
  await e2.loadCheckpoint(ckpt);
  await e2.trainEpoch(train, { batchSize: 32, maxEpochs: 7 }, (e) => lb.push(e.metrics.loss));
  const dl = Math.max(...la.map((l, i) => Math.abs(l - lb[i])));
  // CPU: identical; CUDA: cuDNN's backward kernels accumulate in a nondeterministic order, so not bitwise.
  assert(la.length === lb.length && dl <= (cpuOnly ? 1e-6 : 1e-2), `resumed epoch losses differ by ${dl}`);
  return `max output diff ${d.toExponential(1)}, resumed-epoch loss diff ${dl.toExponential(1)}`;
});
// ONNX from the model just trained on the device: the exporter reads the weights back to the CPU; its
// validation runs libtorch on the model's device and ONNX Runtime on its CPU provider. cuDNN convolutions may
// use TF32, so on CUDA the report's own 1e-4 limit is printed, and the check asks for ≤ 1e-3.
await check(`ONNX export of the ${device}-trained model: onnxruntime (CPU) vs libtorch ${device}`, async () => {
  assert(model, 'no model from the fit');
  let exportOnnx;
  try {
    ({ exportOnnx } = await import(pathToFileURL(join(process.env.HEIMDALL_ROOT, 'lib', 'onnx', 'export.ts')).href));
  } catch (e) {
    throw new Error(`onnxruntime-node is not in the carried node_modules (re-run --prepare): ${e.message}`);
  }
  const r = await exportOnnx(model, join(dir, 'model.onnx'), { inputShape: [3, 64, 64], validate: { batchSizes: [1, 8] } });
  const v = r.validation;
  assert(v, 'no validation report');
  assert(v.maxAbs <= 1e-3, `max |Δ| ${v.maxAbs}`);
  return `${(r.modelBytes / 1e6).toFixed(1)} MB in ${r.exportSeconds.toFixed(2)} s; max |Δ| ${v.maxAbs.toExponential(2)}, ` +
    `mean ${v.meanAbs.toExponential(2)} (${v.passed ? 'within' : 'outside'} the 1e-4 / 1e-5 limits)`;
});
// GPU system metrics as the tracker's worker reads them: NVML (the driver's libnvidia-ml.so.1) through the loader
// shim next to the addon. On the GPU machine it must open and report the memory the fit above holds and power.
await check('system metrics: GPUs through NVML (loader shim)', async () => {
  const { SystemMetricsMonitor } = await import(pathToFileURL(join(process.env.HEIMDALL_ROOT, 'lib', 'tracking', 'system_metrics.ts')).href);
  const points = [], warnings = [];
  const m = new SystemMetricsMonitor('r', { samplingIntervalS: 60, samplesBeforeLogging: 1, startStep: 0, nvml: 'libnvidia-ml.so.1' }, (_id, ms) => points.push(...ms), (w) => warnings.push(w));
  m.tick();
  m.stop();
  const v = Object.fromEntries(points.map((p) => [p.key.slice('system/'.length), p.value]));
  const gpu = Object.entries(v).filter(([k]) => k.startsWith('gpu_')).map(([k, x]) => `${k}=${x}`).join(' ');
  if (cpuOnly) {
    assert(warnings.length === 0, warnings.join('; '));
    return m.readsGpus ? `NVML opened: ${gpu}` : 'no NVIDIA driver: no GPU rows, no warning';
  }
  assert(m.readsGpus, `NVML did not open: ${warnings.join('; ') || 'libnvidia-ml.so.1 not found'}`);
  assert(v.gpu_0_memory_usage_megabytes > 0 && v.gpu_0_power_usage_watts > 0 && v.gpu_0_utilization_percentage >= 0, `GPU 0 rows: ${gpu}`);
  return gpu;
});
if (!cpuOnly) {
  await check('fp16 (16-mixed) with grad scaler: finite, loss falls, scaler state checkpointed', async () => {
    const m = new addon.Model({ variant: 'atto', head: 'localization', seed: 5 });
    const e = new addon.Engine(m, { device, precision: '16-mixed', channelsLast: true, seed: 5, optimizer: { name: 'adamw', lr: 3e-3 }, schedule: { warmupSteps: 10 } });
    const before = await e.evaluate(val, { batchSize: 64 });
    for (let i = 0; i < 6; i++) await e.trainEpoch(train, { batchSize: 32, maxEpochs: 6 });
    const after = await e.evaluate(val, { batchSize: 64 });
    assert(Number.isFinite(after.metrics.loss) && after.metrics.mae < before.metrics.mae / 1.5, `val MAE ${before.metrics.mae} → ${after.metrics.mae}`);
    const ckpt = join(dir, 'fp16.safetensors');
    await e.saveCheckpoint(ckpt);
    const e2 = new addon.Engine(new addon.Model({ variant: 'atto', head: 'localization', seed: 6 }), { device, precision: '16-mixed', seed: 5 });
    await e2.loadCheckpoint(ckpt);
    return `val MAE ${before.metrics.mae.toFixed(3)} → ${after.metrics.mae.toFixed(3)}; checkpoint reloads`;
  });
  await check('device errors (cuda:99, fp16 on cpu)', async () => {
    const m = new addon.Model({ variant: 'atto' });
    let code;
    try { new addon.Engine(m, { device: 'cuda:99' }); } catch (e) { code = e.code; }
    assert(code === 'HEIMDALL_DEVICE_UNAVAILABLE', `cuda:99 gave ${code}`);
    code = undefined;
    try { new addon.Engine(m, { device: 'cpu', precision: '16-mixed' }); } catch (e) { code = e.code; }
    assert(code === 'HEIMDALL_INVALID_ARGUMENT', `fp16 on cpu gave ${code}`);
    return 'clear errors';
  });
  await check('tiny 224×224 bf16 channels_last: one epoch', async () => {
    const m = new addon.Model({ variant: 'tiny', head: 'classification', outputs: 10, seed: 1 });
    const e = new addon.Engine(m, { device, precision: 'bf16-mixed', channelsLast: true, optimizer: { name: 'adamw', lr: 1e-3 } });
    const n = 64, x = new Float32Array(n * 3 * 224 * 224).fill(0.5).map((v, i) => v + Math.sin(i) * 0.1);
    const y = new Int32Array(n).map((_, i) => i % 10);
    const r = await e.trainEpoch(addon.tensorDataset(x, [n, 3, 224, 224], y, [n]), { batchSize: 16, maxEpochs: 1 });
    assert(Number.isFinite(r.metrics.loss), 'non-finite loss');
    return `${r.samplesPerSec.toFixed(0)} img/s (incl. first-batch cuDNN setup)`;
  });
}
rmSync(dir, { recursive: true, force: true });
for (const r of results) console.log(['ROW', r.name, r.ok ? 'ok' : 'FAIL', r.detail.replace(/[\t\n]/g, ' ')].join('\t'));
const failed = results.filter((r) => !r.ok).length;
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
EOF
SUBSET_RC=0
HEIMDALL_ROOT="$ROOT" CUDA_CHECK_CPU=$CPU node --import tsx "$SUBSET" > "$LOGDIR/subset.log" 2>&1 || SUBSET_RC=$?
while IFS=$'\t' read -r tag name res detail; do
  if [ "$tag" = ROW ]; then row "$name" "$res" "$detail"; fi
done < "$LOGDIR/subset.log"
if ! grep -q '^ROW' "$LOGDIR/subset.log"; then row "CUDA subset" FAIL "crashed (rc $SUBSET_RC): $(tail -3 "$LOGDIR/subset.log" | tr '\n' ' ')"; fi
grep -E '^[0-9]+ passed, [0-9]+ failed' "$LOGDIR/subset.log" || true

# ---- ONNX: export time, ONNX Runtime (CPU provider) vs libtorch on the device, parity ----------------------
if [ $BENCH = 1 ]; then
  B0=$(date +%s)
  if [ $CPU = 1 ]; then ONNX_ARGS="--variants atto --quick --parity"; else ONNX_ARGS="--variants atto,tiny,base,large --quick --device cuda"; fi
  # shellcheck disable=SC2086
  if node --import tsx benchmarks/onnx/export.ts $ONNX_ARGS > "$LOGDIR/onnx.txt" 2>&1; then
    row "ONNX benchmark" ok "$(( $(date +%s) - B0 )) s; table below"
  else
    row "ONNX benchmark" FAIL "see $LOGDIR/onnx.txt"; tail -20 "$LOGDIR/onnx.txt"
  fi
fi

# ---- throughput: heimdall-torch vs PyTorch eager, same AMP settings ---------------------------------------
if [ $BENCH = 1 ]; then
  if [ $CPU = 1 ]; then
    DEFAULT_BENCH="--device cpu --only atto:128x32:8 --reps 1 --steps 3 --compile none --e2e none"
  else
    # The issue's CUDA rows: eager AMP and torch.compile anchors on the same card.
    DEFAULT_BENCH="--device cuda --precision bf16-mixed --channels-last --only tiny:224x224:64,large:224x224:32 --compile all --e2e none --reps 5 --warmup 2 --steps 30"
  fi
  B0=$(date +%s)
  # shellcheck disable=SC2086
  if node --import tsx benchmarks/train_throughput.ts --python "$PYTHON" $DEFAULT_BENCH $BENCH_ARGS \
      --json "$LOGDIR/throughput.json" > "$LOGDIR/throughput.txt" 2>&1; then
    row "throughput benchmark" ok "$(( $(date +%s) - B0 )) s; table below, JSON in $LOGDIR/throughput.json"
  else
    row "throughput benchmark" FAIL "see $LOGDIR/throughput.txt"; tail -20 "$LOGDIR/throughput.txt"
  fi
fi
[ $SUBSET_RC = 0 ]
