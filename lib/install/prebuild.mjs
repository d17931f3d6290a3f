#!/usr/bin/env node
// `npm run prebuilds` (not "prebuild": npm would run that before every `npm run build`): prebuilds/linux-x64/heimdall-torch.glibc.node (Node-API, stripped) + the loader shim
// libheimdall_torch_loader.so + the build record heimdall_torch.json, from the cmake-js build in build/.
//
// prebuildify drives it: it runs its "node-gyp" command — here this script with --stage, which runs the
// incremental `cmake-js compile --out build` (nothing recompiles when build/ is current) and copies the
// outputs into a staging folder — then strips and names the files. The build/Release originals stay as
// they are (prebuildify moves what it finds, so it works on copies).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const release = join(root, 'build', 'Release');
const stage = join(root, 'build', 'prebuild-stage');
const FILES = ['heimdall_torch.node', 'libheimdall_torch_loader.so'];

if (process.argv[2] === '--stage') {
  // Called by prebuildify as its node-gyp (`… rebuild --target=… --release`, arguments ignored), cwd = stage.
  const cmakeJs = join(dirname(createRequire(import.meta.url).resolve('cmake-js/package.json')), 'bin', 'cmake-js');
  const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', 'build'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
  const out = join(stage, 'build', 'Release');
  mkdirSync(out, { recursive: true });
  for (const f of FILES) copyFileSync(join(release, f), join(out, f));
  process.exit(0);
}

const prebuildify = createRequire(import.meta.url)('prebuildify');
rmSync(stage, { recursive: true, force: true });
mkdirSync(stage, { recursive: true });
const dest = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
rmSync(dest, { recursive: true, force: true });
const t0 = Date.now();
prebuildify({
  cwd: stage,
  out: root,
  name: 'heimdall-torch',
  napi: true,
  strip: true,
  tagLibc: true,         // heimdall-torch.glibc.node: libtorch is a glibc build, musl cannot load it
  targets: [`node@${process.versions.node}`],  // Node-API: one build serves every Node ≥ 20
  shell: '/bin/sh',       // so that nodeGyp may be a command line
  nodeGyp: `"${process.execPath}" "${fileURLToPath(import.meta.url)}" --stage`,
}, (err) => {
  if (err) {
    console.error(`prebuild: ${err.message || err}`);
    process.exit(1);
  }
  copyFileSync(join(release, 'heimdall_torch.json'), join(dest, 'heimdall_torch.json'));
  rmSync(stage, { recursive: true, force: true });
  for (const f of readdirSync(dest)) console.log(`prebuild: ${join('prebuilds', `${process.platform}-${process.arch}`, f)} (${(statSync(join(dest, f)).size / 1024).toFixed(0)} KiB)`);
  console.log(`prebuild: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  if (!existsSync(join(dest, 'libheimdall_torch_loader.so'))) {
    console.error('prebuild: the loader shim was not copied');
    process.exit(1);
  }
});
