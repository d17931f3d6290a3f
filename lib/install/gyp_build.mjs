// Called by binding.gyp's action (`node-gyp rebuild`): builds the addon with cmake-js into build/cmake and
// copies heimdall_torch.node, the loader shim and the build record into node-gyp's product directory
// (argv[2], normally build/Release). CMakeLists.txt is the one description of the build; this only lets
// node-gyp-driven tools reach it. libtorch is found as in every build: LIBTORCH / Torch_DIR, the project's
// .venv, the python3 on PATH, a system install (native/cmake/FindLibtorch.cmake).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const product = resolve(process.argv[2] ?? join(root, 'build', 'Release'));
const out = join(root, 'build', 'cmake');
const cmakeJs = join(dirname(createRequire(import.meta.url).resolve('cmake-js/package.json')), 'bin', 'cmake-js');

const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', out], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error('heimdall-torch: the cmake-js build failed (see above). It needs cmake ≥ 3.18, a C++20 compiler ' +
    '(gcc ≥ 12) and libtorch 2.15 (`pip install torch==2.15.0`, or LIBTORCH=<folder>).');
  process.exit(r.status ?? 1);
}
mkdirSync(product, { recursive: true });
for (const f of ['heimdall_torch.node', 'libheimdall_torch_loader.so', 'heimdall_torch.json']) {
  const src = join(out, 'Release', f);
  if (!existsSync(src)) {
    console.error(`heimdall-torch: the cmake-js build did not produce ${f} in ${join(out, 'Release')}`);
    process.exit(1);
  }
  copyFileSync(src, join(product, f));
}
console.log(`heimdall-torch: copied the addon, loader and build record to ${product}`);
