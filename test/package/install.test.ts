// The user's path: `npm pack`, then in an empty folder install the tarball with no compiler reachable and
// run plain scripts that import the package, train a few batches, log to MLflow (sqlite in that folder) and
// export ONNX. Nothing may be built: the prebuild is used, libtorch is found at run time (no LD_LIBRARY_PATH).
//
// With no network: npm's registry is a local one serving the project's node_modules (helpers/npm_registry.ts),
// with a fresh npm cache, and every other download fails fast (HTTP(S)_PROXY and global-agent's proxy, which
// onnxruntime-node's install script uses, point at a closed port).
//
// Dependencies with native install steps, handled as a user's machine would:
//  - better-sqlite3 runs prebuild-install, which downloads its binary from GitHub (not reachable here). We give
//    prebuild-install the same file a download would give — the tarball of the better_sqlite3.node this repo's
//    `npm ci` produced for the same better-sqlite3 version and Node ABI — through its documented local-prebuild
//    setting (npm_config_better_sqlite3_local_prebuilds), so its install step unpacks it instead of compiling;
//    the user's project pins better-sqlite3 to that version (else npm picks the newest ^12 release).
//  - onnxruntime-node is an optional peer dependency, so `npm install heimdall-torch` does not install it (its
//    install script downloads the CUDA provider from outside the registry: offline, the install failed). The
//    user installs it as the README says (`--onnxruntime-node-install=skip`: the CPU binaries in the npm package).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ONNXRUNTIME_INSTALL, ONNXRUNTIME_RANGE } from '../../lib/onnx/runtime.js';
import { startLocalRegistry, type LocalRegistry } from '../helpers/npm_registry.js';
import { python, repoRoot, venvPython } from '../helpers/python.js';
import { tempDir } from '../helpers/tmp.js';

// npm's own CLI script, run with this node (PATH in the user's environment has no npm shim)
const npmCli = realpathSync(execFileSync('sh', ['-c', 'command -v npm']).toString().trim());
const venv = join(repoRoot, '.venv');

let work: string;      // the user's empty project
let binDir: string;    // PATH for the user's commands: node and sh, nothing that compiles
let installLog = '';
let tarball: string;
let registry: LocalRegistry;
/** No network: npm's registry is the local one, every other download goes to a closed port. */
let offline: Record<string, string> = {};

function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: binDir,
    HOME: join(work, 'home'),
    TMPDIR: process.env.TMPDIR ?? '/tmp',
    npm_config_cache: process.env.npm_config_cache ?? join(process.env.HOME ?? '/root', '.npm'),
    CI: '1',
    ...extra,
  };
  return env;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeout = 240_000) {
  const r = spawnSync(cmd, args, { cwd: work, env, encoding: 'utf8', timeout });
  return { code: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}`, error: r.error };
}

/** npm, without blocking this process (the local registry answers from it). */
function npm(args: string[], env: NodeJS.ProcessEnv, timeout = 240_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [npmCli, ...args], { cwd: work, env: { ...env, ...offline }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeout);
    p.on('close', (code) => { clearTimeout(timer); resolve({ code, out }); });
  });
}

afterAll(async () => { await registry?.close(); });

beforeAll(async () => {
  work = tempDir('heimdall-user-');
  binDir = join(work, 'bin');
  mkdirSync(binDir);
  mkdirSync(join(work, 'home'));
  symlinkSync(process.execPath, join(binDir, 'node'));
  symlinkSync('/bin/sh', join(binDir, 'sh'));  // npm runs scripts through sh

  // The package as released: fresh prebuild from the current build, TypeScript already built by `pretest`.
  execFileSync(process.execPath, [join(repoRoot, 'lib/install/prebuild.mjs')], { cwd: repoRoot, stdio: 'pipe' });
  const packDir = join(work, 'pack');
  mkdirSync(packDir);
  const packed = JSON.parse(execFileSync(process.execPath, [npmCli, 'pack', '--json', '--pack-destination', packDir],
    { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })) as Array<{ filename: string; size: number; files: Array<{ path: string }> }>;
  tarball = join(packDir, packed[0]!.filename);
  console.log(`npm pack: ${packed[0]!.filename} ${(packed[0]!.size / 1024).toFixed(0)} KiB, ${packed[0]!.files.length} files`);

  // better-sqlite3's binary as its release download would be: <name>-v<version>-node-v<abi>-<platform>-<arch>.tar.gz
  const bsq = JSON.parse(readFileSync(join(repoRoot, 'node_modules/better-sqlite3/package.json'), 'utf8')) as { version: string };
  const local = join(work, 'local-prebuilds');
  mkdirSync(local);
  execFileSync('tar', ['-czf', join(local, `better-sqlite3-v${bsq.version}-node-v${process.versions.modules}-linux-x64.tar.gz`),
    '-C', join(repoRoot, 'node_modules/better-sqlite3'), 'build/Release/better_sqlite3.node']);

  // npm 11 runs dependencies' install scripts only where the project allows them (`npm install-scripts approve`)
  writeFileSync(join(work, 'package.json'), JSON.stringify({ name: 'user-app', private: true, type: 'module',
    allowScripts: { 'heimdall-torch': true, 'better-sqlite3': true } }));
  registry = await startLocalRegistry(join(repoRoot, 'node_modules'), join(work, 'registry'));
  const closed = 'http://127.0.0.1:9';
  offline = {
    npm_config_registry: registry.url, npm_config_cache: join(work, 'npm-cache'), npm_config_noproxy: '127.0.0.1',
    NO_PROXY: '127.0.0.1', HTTP_PROXY: closed, HTTPS_PROXY: closed, http_proxy: closed, https_proxy: closed,
    GLOBAL_AGENT_HTTP_PROXY: closed, GLOBAL_AGENT_HTTPS_PROXY: closed, GLOBAL_AGENT_NO_PROXY: '127.0.0.1',
  };
  // better-sqlite3 pinned to the version whose binary we have (npm would otherwise take the newest ^12 release)
  const r = await npm(['install', tarball, `better-sqlite3@${bsq.version}`, '--no-audit', '--no-fund', '--foreground-scripts', '--loglevel=info'],
    userEnv({ npm_config_better_sqlite3_local_prebuilds: local, VIRTUAL_ENV: venv }), 400_000);
  installLog = r.out;
  if (r.code !== 0) throw new Error(`npm install failed (${r.code}):\n${r.out.slice(-4000)}`);
}, 600_000);

describe('npm pack → install with no compiler → train, track, export', () => {
  it('installs from the prebuilds without building anything', () => {
    for (const tool of ['g++', 'gcc', 'cc', 'c++', 'cmake', 'make', 'cmake-js', 'python3']) {
      expect(spawnSync('sh', ['-c', `command -v ${tool}`], { env: userEnv() }).status, `${tool} must not be on PATH`).not.toBe(0);
    }
    const pkg = join(work, 'node_modules', 'heimdall-torch');
    expect(installLog).toMatch(/heimdall-torch install: using the prebuild prebuilds\/linux-x64\/heimdall-torch\.glibc\.node .*nothing is compiled/);
    expect(installLog).toMatch(/heimdall-torch install: libtorch 2\.15\.\d\S* found at \S+ \(VIRTUAL_ENV\)/);
    expect(installLog).toMatch(/prebuild-install info found local prebuild/);  // better-sqlite3: unpacked, not compiled
    expect(installLog).not.toMatch(/gyp info|gyp ERR|CMD BUILD|cmake --build|Building CXX/);
    expect(existsSync(join(pkg, 'build')), 'no build/ folder in the installed package').toBe(false);
    expect(existsSync(join(work, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node'))).toBe(true);
    expect(readdirSync(join(pkg, 'prebuilds', 'linux-x64')).sort()).toEqual(['heimdall-torch.glibc.node', 'heimdall_torch.json', 'libheimdall_torch_loader.so']);
    // the packed addon has no RUNPATH pointing at the build machine
    const dyn = execFileSync('readelf', ['-d', join(pkg, 'prebuilds/linux-x64/heimdall-torch.glibc.node')]).toString();
    expect(dyn).not.toMatch(/RUNPATH|RPATH/);
    expect(dyn).toMatch(/NEEDED.*\[libtorch\.so\]/);
    // no network was used: everything came from the local registry, onnxruntime-node was not installed
    expect(registry.requested.has('heimdall-torch')).toBe(false);  // the tarball, from the file
    expect(registry.requested.has('zod')).toBe(true);
    expect(existsSync(join(work, 'node_modules/onnxruntime-node')), 'onnxruntime-node is an optional peer dependency').toBe(false);
    expect(installLog).not.toMatch(/nuget|Downloading|ECONNREFUSED|ENOTFOUND/i);
  });

  it('without onnxruntime-node: ONNX export and inference give one error naming the package and the command; installed as the README says, nothing is downloaded', async () => {
    writeFileSync(join(work, 'no-ort.mjs'), `
import { loadModel, exportOnnx, ConvNeXt } from 'heimdall-torch';
const codes = [];
for (const f of [() => loadModel('model.onnx'), () => exportOnnx(ConvNeXt.localization('convnext_atto', { inChans: 7 }).native, 'never.onnx')]) {
  try { await f(); codes.push('no error'); } catch (e) { codes.push(e.code); console.error(e.message); }
}
console.log(JSON.stringify(codes));
`);
    const r = run(process.execPath, ['no-ort.mjs'], userEnv({ VIRTUAL_ENV: venv }));
    expect(r.code, r.out).toBe(0);
    expect(JSON.parse(r.out.split('\n').find((l) => l.startsWith('["'))!)).toEqual(['HEIMDALL_ONNXRUNTIME_MISSING', 'HEIMDALL_ONNXRUNTIME_MISSING']);
    expect(r.out).toContain(ONNXRUNTIME_INSTALL);
    expect(r.out).toMatch(/loadModel\(\) \(running an exported model\) needs ONNX Runtime/);
    expect(r.out).toMatch(/pass validate: false/);
    expect(existsSync(join(work, 'never.onnx')), 'the export failed before writing anything').toBe(false);
    // the CLI says so before training, not after
    const cli = run(join(work, 'node_modules/.bin/heimdall-torch'), ['train', '--epochs', '1', '--samples', '40', '--output-dir', 'never'], userEnv({ VIRTUAL_ENV: venv }));
    expect(cli.code, cli.out).toBe(1);
    expect(cli.out).toMatch(/heimdall-torch train .* needs ONNX Runtime.*pass --no-export-onnx/s);
    expect(cli.out).not.toMatch(/epoch 0/);
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { peerDependencies: Record<string, string>; peerDependenciesMeta: Record<string, { optional?: boolean }>; devDependencies: Record<string, string> };
    expect(pkg.peerDependencies['onnxruntime-node']).toBe(ONNXRUNTIME_RANGE);
    expect(pkg.peerDependenciesMeta['onnxruntime-node']?.optional).toBe(true);
    expect(pkg.devDependencies['onnxruntime-node']).toBe(ONNXRUNTIME_RANGE);

    // the README's command, word for word (after `npm`)
    const i = await npm([...ONNXRUNTIME_INSTALL.split(' ').slice(1), '--no-audit', '--no-fund', '--foreground-scripts'], userEnv(), 300_000);
    expect(i.code, i.out.slice(-3000)).toBe(0);
    expect(i.out).not.toMatch(/nuget|Downloading|ECONNREFUSED|ENOTFOUND/i);
    const bin = join(work, 'node_modules/onnxruntime-node/bin/napi-v6/linux/x64');
    expect(readdirSync(bin).sort()).toEqual(['libonnxruntime.so.1', 'onnxruntime_binding.node']);  // CPU only, as packed
  }, 300_000);

  it('a plain .mjs script trains a few batches, logs one MLflow run to sqlite and exports a validated ONNX file', async () => {
    writeFileSync(join(work, 'app.mjs'), `
import { Trainer, ConvNeXt, HeimdallDataModule, MLflowLogger, torchInfo } from 'heimdall-torch';
const info = torchInfo();
const trainer = new Trainer({ maxEpochs: 1, device: 'cpu', threads: 2, enableProgressBar: false, handleSignals: false,
  optimizer: { name: 'adamw', lr: 1e-3 }, logger: new MLflowLogger({ runName: 'user-app' }), defaultRootDir: 'outputs' });
const model = ConvNeXt.localization('convnext_atto', { inChans: 7 });
const history = await trainer.fit(model, HeimdallDataModule.synthetic({ samples: 80, batchSize: 16, seed: 1 }));
const report = await trainer.exportOnnx('model.onnx');
console.log(JSON.stringify({ libtorch: info.libtorch, epochs: history.epochs?.length ?? null,
  valid: report.validation?.passed ?? null, onnxBytes: report.modelBytes, output: report.outputNames, warnings: trainer.logger.tracker.warnings }));
`);
    // torch comes from the user's activated virtualenv (VIRTUAL_ENV), as after `pip install torch==2.15.0` in it
    const r = run(process.execPath, ['app.mjs'], userEnv({ VIRTUAL_ENV: venv, MLFLOW_TRACKING_URI: `sqlite:///${join(work, 'mlflow.db')}` }));
    expect(r.code, r.out.slice(-3000)).toBe(0);
    const last = JSON.parse(r.out.trim().split('\n').at(-1)!) as { libtorch: string; valid: boolean; onnxBytes: number; output: string[]; warnings: string[] };
    // the tracker's worker loaded the prebuild's loader shim for GPU system metrics (no driver here: no rows, no warning)
    expect(last.warnings).toEqual([]);
    expect(last.libtorch).toMatch(/^2\.15\./);
    expect(last.valid).toBe(true);
    expect(last.onnxBytes).toBeGreaterThan(1_000_000);
    expect(last.output).toEqual(['positions', 'uncertainties']);
    expect(existsSync(join(work, 'node_modules/heimdall-torch/build'))).toBe(false);
    // MLflow itself reads the run back from the user's sqlite file
    const out = await python(`import sys, mlflow
c = mlflow.MlflowClient(sys.argv[1])
runs = c.search_runs([e.experiment_id for e in c.search_experiments()])
print(len(runs), runs[0].info.status, runs[0].info.run_name, 'train/loss_epoch' in runs[0].data.metrics, 'heimdall.onnx_sha256' in runs[0].data.tags)`, [`sqlite:///${join(work, 'mlflow.db')}`]);
    expect(out.trim()).toBe('1 FINISHED user-app True True');
  }, 300_000);

  it('require() gives the same module, the bin runs, LIBTORCH is honoured', () => {
    writeFileSync(join(work, 'app.cjs'), `
const h = require('heimdall-torch');
import('heimdall-torch').then((m) => console.log(JSON.stringify({ same: m.Trainer === h.Trainer, n: Object.keys(h).length })));
`);
    const r = run(process.execPath, ['app.cjs'], userEnv({ VIRTUAL_ENV: venv }));
    expect(r.code, r.out).toBe(0);
    expect(JSON.parse(r.out.trim().split('\n').at(-1)!)).toMatchObject({ same: true });
    const torchDir = execFileSync(venvPython, ['-c', 'import os, importlib.util as u; print(os.path.dirname(u.find_spec("torch").origin))']).toString().trim();
    const info = run(join(work, 'node_modules/.bin/heimdall-torch'), ['info'], userEnv({ LIBTORCH: torchDir }));
    expect(info.code, info.out).toBe(0);
    expect(info.out).toMatch(/2\.15\.0/);
  });

  it('no libtorch anywhere: one clear error naming what was looked at and the fix', () => {
    const r = run(process.execPath, ['-e', "import('heimdall-torch').then((m) => m.torchInfo()).catch((e) => { console.error('CODE', e.code); console.error(e.message); process.exit(3); })"],
      userEnv({ PYTHON: join(work, 'no-python') }));
    expect(r.code, r.out).toBe(3);
    expect(r.out).toMatch(/CODE HEIMDALL_LIBTORCH_NOT_FOUND/);
    expect(r.out).toMatch(/libtorch was not found/);
    expect(r.out).toMatch(/Needed: libtorch 2\.15\.0/);
    expect(r.out).toMatch(/pip install torch==2\.15\.0/);
    expect(r.out).toMatch(/export LIBTORCH=/);
    // a LIBTORCH that is not one is named, not skipped
    const bad = run(process.execPath, ['-e', "import('heimdall-torch').then((m) => m.torchInfo()).catch((e) => { console.error(e.message); process.exit(3); })"],
      userEnv({ LIBTORCH: join(work, 'pack'), VIRTUAL_ENV: venv }));
    expect(bad.code).toBe(3);
    expect(bad.out).toMatch(/LIBTORCH=.*pack is not a usable libtorch/);
    expect(bad.out).toMatch(/has no lib\/libtorch\.so/);
  });
});
