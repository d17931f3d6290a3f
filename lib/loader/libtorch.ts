// Runtime libtorch discovery for the native addon (no LD_LIBRARY_PATH, no RUNPATH in the addon).
//
// The addon (source build or prebuild) has libtorch.so / libtorch_cpu.so / libc10.so as DT_NEEDED sonames
// and no RUNPATH. Before it is loaded, findLibtorch() looks for a libtorch folder, in this order:
//   1. LIBTORCH (a libtorch folder, a torch package folder, or their lib/), or Torch_DIR (<libtorch>/share/cmake/Torch)
//   2. a Python torch package: $VIRTUAL_ENV, ./.venv, the package checkout's .venv, $CONDA_PREFIX, the user's
//      and the system's site-/dist-packages (probed as paths; nothing is run), then
//      `python3 -c "importlib.util.find_spec('torch')"` as a fallback (does not import torch)
//   3. a system install: /usr/local/libtorch, /opt/libtorch, /usr/lib/libtorch
// and checks each one's version against the build record written next to the addon (heimdall_torch.json).
// The first compatible one is dlopened (RTLD_GLOBAL) through the loader shim libheimdall_torch_loader.so;
// the addon's sonames then resolve to it. None compatible → one error listing what was found and the fix.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { HeimdallError } from '../errors.js';

/** What heimdall_torch.json (written by CMake next to the addon) records about the build. */
export interface BuildRecord {
  version: string;
  napiVersion: number;
  platform: string;
  compiler?: string;
  libtorch: {
    version: string;       // 2.15.0
    full: string;          // 2.15.0+cu132
    cxx11Abi: number;
    cudaBuild: boolean;
    cudaVersion: string;   // '' for CPU builds
    source?: string;
    root?: string;
  };
}

/** A libtorch folder found on this machine. */
export interface LibtorchCandidate {
  /** Where it came from: 'LIBTORCH', 'VIRTUAL_ENV', './.venv', 'python3', 'system', … */
  source: string;
  /** The folder holding lib/libtorch.so (a libtorch folder or a torch package folder). */
  root: string;
  libDir: string;
  /** major.minor.patch, or null when no version file was readable. */
  version: string | null;
  /** The full tag when known: 2.15.0+cu132, 2.15.0+cpu. */
  full: string | null;
  cudaBuild: boolean;
}

export interface LibtorchProbe {
  where: string;
  found?: LibtorchCandidate;
  note: string;
}

export interface LibtorchSelection {
  chosen: LibtorchCandidate;
  probes: LibtorchProbe[];
}

/** The error thrown when no compatible libtorch is found or it does not load. */
export class LibtorchError extends HeimdallError<'HEIMDALL_LIBTORCH_NOT_FOUND' | 'HEIMDALL_LIBTORCH_INCOMPATIBLE' | 'HEIMDALL_LIBTORCH_LOAD'> {
  constructor(code: LibtorchError['code'], message: string) {
    super(code, message);
    this.name = 'LibtorchError';
  }
}

export function readBuildRecord(addonPath: string): BuildRecord | null {
  const file = join(dirname(addonPath), 'heimdall_torch.json');
  if (!existsSync(file)) return null;
  try {
    const rec = JSON.parse(readFileSync(file, 'utf8')) as BuildRecord;
    return rec && rec.libtorch && typeof rec.libtorch.version === 'string' ? rec : null;
  } catch {
    return null;
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Reads the version of a libtorch folder without loading it. */
export function describeLibtorch(root: string, source: string): LibtorchCandidate | null {
  let dir = resolve(root);
  if (existsSync(join(dir, 'libtorch.so')) && basename(dir) === 'lib') dir = dirname(dir);
  const libDir = join(dir, 'lib');
  if (!existsSync(join(libDir, 'libtorch.so')) || !existsSync(join(libDir, 'libtorch_cpu.so')) ||
      !existsSync(join(libDir, 'libc10.so'))) {
    return null;
  }
  let version: string | null = null;
  let full: string | null = null;
  const read = (p: string): string | null => {
    try {
      return readFileSync(p, 'utf8');
    } catch {
      return null;
    }
  };
  const py = read(join(dir, 'version.py'));  // the torch wheel
  const m = py?.match(/__version__\s*=\s*'([^']+)'/);
  if (m) full = m[1]!;
  if (!full) full = read(join(dir, 'build-version'))?.trim() || null;  // the libtorch zip
  for (const h of ['include/torch/headeronly/version.h', 'include/torch/csrc/api/include/torch/version.h']) {
    const txt = read(join(dir, h));
    const mm = txt && [/TORCH_VERSION_MAJOR (\d+)/, /TORCH_VERSION_MINOR (\d+)/, /TORCH_VERSION_PATCH (\d+)/].map((r) => txt.match(r)?.[1]);
    if (mm && mm.every(Boolean)) {
      version = mm.join('.');
      break;
    }
  }
  if (!version && full) version = full.match(/^(\d+\.\d+\.\d+)/)?.[1] ?? null;
  return { source, root: dir, libDir, version, full: full ?? version, cudaBuild: existsSync(join(libDir, 'libtorch_cuda.so')) };
}

function sitePackagesTorch(prefix: string): string[] {
  const out: string[] = [];
  for (const libName of ['lib', 'lib64']) {
    const lib = join(prefix, libName);
    let entries: string[] = [];
    try {
      entries = readdirSync(lib).filter((e) => /^python3(\.\d+)?$/.test(e)).sort().reverse();
    } catch {
      continue;
    }
    for (const e of entries) {
      for (const sp of ['site-packages', 'dist-packages']) out.push(join(lib, e, sp, 'torch'));
    }
  }
  return out;
}

/** Candidate folders in search order, with where each came from (exported for tests and the install script). */
export function candidateRoots(opts: { cwd?: string; packageRoot?: string; env?: NodeJS.ProcessEnv } = {}): Array<{ where: string; path: string }> {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const out: Array<{ where: string; path: string }> = [];
  const add = (where: string, paths: string[]) => paths.forEach((path) => out.push({ where, path }));
  if (env.VIRTUAL_ENV) add('VIRTUAL_ENV', sitePackagesTorch(env.VIRTUAL_ENV));
  add('./.venv', sitePackagesTorch(join(cwd, '.venv')));
  if (opts.packageRoot && resolve(opts.packageRoot) !== resolve(cwd)) add('package .venv', sitePackagesTorch(join(opts.packageRoot, '.venv')));
  if (env.CONDA_PREFIX) add('CONDA_PREFIX', sitePackagesTorch(env.CONDA_PREFIX));
  add('user site-packages', sitePackagesTorch(join(env.HOME || homedir(), '.local')));
  add('system site-packages', [...sitePackagesTorch('/usr/local'), ...sitePackagesTorch('/usr')]);
  return out;
}

export const SYSTEM_LIBTORCH = ['/usr/local/libtorch', '/opt/libtorch', '/usr/lib/libtorch'];

function pythonTorch(env: NodeJS.ProcessEnv): { path: string | null; note: string } {
  const py = env.PYTHON || 'python3';
  // find_spec locates the package without importing it (importing torch takes seconds).
  const r = spawnSync(py, ['-c', "import importlib.util as u, os; s = u.find_spec('torch'); print(os.path.dirname(s.origin) if s and s.origin else '')"],
    { encoding: 'utf8', timeout: 15000, env });
  if (r.error) return { path: null, note: `${py} not runnable (${(r.error as NodeJS.ErrnoException).code ?? r.error.message})` };
  const path = r.status === 0 ? r.stdout.trim() : '';
  return path ? { path, note: '' } : { path: null, note: `${py} has no torch package` };
}

export function versionsCompatible(built: BuildRecord['libtorch'], found: LibtorchCandidate): string | null {
  if (!found.version) return 'its version is unreadable (no version.py, build-version or version.h)';
  const [bMaj, bMin] = built.version.split('.');
  const [fMaj, fMin] = found.version.split('.');
  // libtorch's C++ ABI changes between minor releases; patch releases keep it.
  if (bMaj !== fMaj || bMin !== fMin) return `version ${found.full ?? found.version}, need ${bMaj}.${bMin}.x`;
  const fMinor = Number(fMin);
  const fAbi = Number(fMaj) > 2 || (Number(fMaj) === 2 && fMinor >= 7) ? 1 : null;  // 2.7+: C++11 ABI only
  if (fAbi !== null && built.cxx11Abi !== fAbi) return `C++11 ABI ${fAbi}, the addon was built with ${built.cxx11Abi}`;
  return null;
}

function describeBuilt(rec: BuildRecord | null): string {
  if (!rec) return 'libtorch (no build record heimdall_torch.json next to the addon)';
  const l = rec.libtorch;
  return `libtorch ${l.full || l.version} (${l.cudaBuild ? (l.cudaVersion ? `CUDA ${l.cudaVersion} build` : 'CUDA build') : 'CPU build'}, C++11 ABI ${l.cxx11Abi})`;
}

export function fixCommand(rec: BuildRecord | null): string {
  const v = rec?.libtorch.version ?? '2.15.0';
  return `pip install torch==${v}`;
}

function fixText(rec: BuildRecord | null): string {
  const v = rec?.libtorch.version ?? '2.15.0';
  return (
    `Fix: \`${fixCommand(rec)}\` (into the active Python, $VIRTUAL_ENV or ./.venv), ` +
    `or \`export LIBTORCH=/path/to/libtorch\` (an unpacked libtorch ${v} zip or a torch ${v} package folder).`
  );
}

/** Finds the first compatible libtorch; throws a LibtorchError listing everything looked at otherwise. */
export function findLibtorch(rec: BuildRecord | null, opts: { cwd?: string; packageRoot?: string; env?: NodeJS.ProcessEnv } = {}): LibtorchSelection {
  const env = opts.env ?? process.env;
  const probes: LibtorchProbe[] = [];
  const seen = new Set<string>();
  const consider = (where: string, path: string, explicit = false): LibtorchCandidate | null => {
    let real = path;
    try {
      real = realpathSync(path);
    } catch {
      if (explicit) probes.push({ where: `${where}=${path}`, note: 'does not exist' });
      return null;
    }
    if (seen.has(real)) return null;
    seen.add(real);
    if (!isDir(real)) {
      if (explicit) probes.push({ where: `${where}=${path}`, note: 'is not a folder' });
      return null;
    }
    const c = describeLibtorch(real, where);
    if (!c) {
      if (explicit) probes.push({ where: `${where}=${path}`, note: 'has no lib/libtorch.so, lib/libtorch_cpu.so, lib/libc10.so' });
      return null;
    }
    const bad = rec ? versionsCompatible(rec.libtorch, c) : null;
    probes.push({ where: explicit ? `${where}=${path}` : where, found: c, note: bad ? `incompatible: ${bad}` : 'compatible' });
    return bad ? null : c;
  };
  const fail = (code: LibtorchError['code'], head: string): never => {
    const lines = probes.map((p) => `  - ${p.where}: ${p.found ? `${p.found.root} — libtorch ${p.found.full ?? '?'}${p.found.cudaBuild ? ' (CUDA)' : ' (CPU)'}, ${p.note}` : p.note}`);
    throw new LibtorchError(code, `${head}\nNeeded: ${describeBuilt(rec)}.\nLooked at:\n${lines.join('\n')}\n${fixText(rec)}`);
  };

  // 1. explicit: LIBTORCH, Torch_DIR. Set but unusable is an error (never silently something else).
  for (const [name, transform] of [['LIBTORCH', (v: string) => v], ['Torch_DIR', (v: string) => resolve(v, '../../..')]] as const) {
    const v = env[name];
    if (!v) continue;
    const c = consider(name, transform(v), true);
    if (c) return { chosen: c, probes };
    fail(probes.at(-1)?.found ? 'HEIMDALL_LIBTORCH_INCOMPATIBLE' : 'HEIMDALL_LIBTORCH_NOT_FOUND',
      `heimdall-torch: ${name}=${v} is not a usable libtorch.`);
  }
  probes.push({ where: 'LIBTORCH', note: 'not set' });
  // 2. Python torch packages at known paths, then python3's own answer.
  for (const { where, path } of candidateRoots({ ...opts, env })) {
    if (!existsSync(path)) continue;
    const c = consider(where, path);
    if (c) return { chosen: c, probes };
  }
  const py = pythonTorch(env);
  if (py.path) {
    const c = consider(`${env.PYTHON || 'python3'} (find_spec)`, py.path);
    if (c) return { chosen: c, probes };
  } else {
    probes.push({ where: 'python', note: py.note });
  }
  // 3. system installs.
  for (const dir of SYSTEM_LIBTORCH) {
    if (!existsSync(dir)) continue;
    const c = consider('system', dir);
    if (c) return { chosen: c, probes };
  }
  probes.push({ where: 'system', note: `nothing usable in ${SYSTEM_LIBTORCH.join(', ')}` });
  const anyFound = probes.some((p) => p.found);
  return fail(anyFound ? 'HEIMDALL_LIBTORCH_INCOMPATIBLE' : 'HEIMDALL_LIBTORCH_NOT_FOUND',
    anyFound ? 'heimdall-torch: no compatible libtorch found.' : 'heimdall-torch: libtorch was not found.');
}

/** What NVML's nvmlOpen answers (native/loader/nvml.cc). */
export interface NvmlStatus {
  /** 'absent': no such library (no NVIDIA driver); 'failed': the library is there but unusable (see message). */
  status: 'ok' | 'absent' | 'failed';
  message: string;
}

/** One GPU as NVML reports it; NaN where NVML does not give that value for this GPU. */
export interface NvmlGpu {
  index: number;
  /** Percent of the last sample period in which a kernel ran (nvmlDeviceGetUtilizationRates().gpu). */
  utilization: number;
  /** Bytes (nvmlDeviceGetMemoryInfo). */
  memoryUsed: number;
  memoryTotal: number;
  /** Milliwatts (nvmlDeviceGetPowerUsage, nvmlDeviceGetEnforcedPowerLimit). */
  power: number;
  powerLimit: number;
}

/** The loader shim's exports (native/loader/loader.cc, nvml.cc). */
export interface LoaderShim {
  preload(paths: string[]): void;
  loadedPath(soname: string): string | null;
  /** Opens and initializes NVML once per library path (default libnvidia-ml.so.1). */
  nvmlOpen(library?: string): NvmlStatus;
  nvmlSample(library?: string): NvmlGpu[];
}

/** The file name of the loader shim, next to the addon. */
export const LOADER_SHIM = 'libheimdall_torch_loader.so';

/**
 * Loads the loader shim next to the addon at `addonPath` (in this thread: Node-API modules load once per
 * thread), or returns null when it is not there (an addon file from elsewhere) or older than `need`.
 */
export function loadShim(addonPath: string, need: keyof LoaderShim = 'preload'): LoaderShim | null {
  const shimPath = join(dirname(addonPath), LOADER_SHIM);
  let shim = shims.get(shimPath);
  if (!shim) {
    if (!existsSync(shimPath)) return null;
    const mod = { exports: {} as LoaderShim };
    process.dlopen(mod, shimPath);
    shim = mod.exports;
    shims.set(shimPath, shim);
  }
  return typeof shim[need] === 'function' ? shim : null;
}
/** The shims this thread loaded, by path (module state is per thread: a worker loads its own). */
const shims = new Map<string, LoaderShim>();

let loaded: { candidate: LibtorchCandidate | null; libtorch: string } | undefined;

/** The libtorch this process loaded (after loadLibtorch), for `info` and error messages. */
export function loadedLibtorch(): { candidate: LibtorchCandidate | null; libtorch: string } | undefined {
  return loaded;
}

/**
 * Makes libtorch loadable for the addon at `addonPath`: finds a compatible libtorch and dlopens it
 * (RTLD_GLOBAL) through the loader shim next to the addon. Idempotent. When the shim is not there (an
 * addon file from elsewhere), does nothing: the addon then loads through its own RUNPATH or LD_LIBRARY_PATH.
 */
export function loadLibtorch(addonPath: string, opts: { packageRoot?: string } = {}): void {
  if (loaded) return;
  const shim = loadShim(addonPath);
  if (!shim) return;
  const already = shim.loadedPath('libtorch.so');
  if (already) {  // another addon of this process loaded one: it is the one the addon will bind to
    loaded = { candidate: describeLibtorch(dirname(already), 'already loaded'), libtorch: already };
    return;
  }
  const rec = readBuildRecord(addonPath);
  const { chosen, probes } = findLibtorch(rec, opts);
  const libs = ['libc10.so', 'libtorch_cpu.so', 'libtorch.so'].map((l) => join(chosen.libDir, l));
  try {
    shim.preload(libs);
  } catch (err) {
    const msg = (err as Error).message;
    const cuda = /libcu|libnv|libcudnn|libnccl/.test(msg);
    throw new LibtorchError('HEIMDALL_LIBTORCH_LOAD',
      `heimdall-torch: libtorch ${chosen.full ?? chosen.version} at ${chosen.root} (from ${chosen.source}) failed to load: ${msg}.\n` +
      (cuda
        ? `It is a CUDA build whose CUDA libraries are missing: reinstall it with its dependencies (\`${fixCommand(rec)}\`), or point LIBTORCH at a CPU libtorch.`
        : fixText(rec)) +
      (probes.length ? `\nLooked at: ${probes.map((p) => `${p.where} (${p.note})`).join('; ')}` : ''));
  }
  loaded = { candidate: chosen, libtorch: shim.loadedPath('libtorch.so') ?? libs[2]! };
}
