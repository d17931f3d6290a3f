// The package's install script (package.json scripts.install). Uses the prebuild when one fits this
// platform; otherwise builds the addon from source with cmake-js (offline: Node-API headers come from the
// node-api-headers package), against the libtorch found the same way the runtime loader finds it.
//
// npm ≥ 11 skips dependencies' install scripts unless allowed (`npm install-scripts approve heimdall-torch`
// or `--allow-scripts=heimdall-torch`). Nothing is lost when it is skipped and a prebuild fits: the addon is
// picked at run time anyway; this script then only reports. Without a fitting prebuild, `npm rebuild
// heimdall-torch` runs it. HEIMDALL_TORCH_BUILD_FROM_SOURCE=1 (or --build-from-source) forces the build.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(import.meta.url);
const log = (msg) => console.log(`heimdall-torch install: ${msg}`);

// A development checkout (not inside node_modules) builds with `npm run build`, after `.ci/setup`.
if (!root.split(sep).includes('node_modules')) {
  log('development checkout: nothing to do here (`npm run build` builds the addon)');
  process.exit(0);
}

const loader = await import('../../dist/lib/loader/libtorch.js');
const forced = process.env.HEIMDALL_TORCH_BUILD_FROM_SOURCE === '1' || process.env.npm_config_build_from_source === 'true';

let prebuild = null;
if (!forced) {
  try {
    const p = require('node-gyp-build').path(root);
    if (p.includes(`${sep}prebuilds${sep}`)) prebuild = p;
  } catch {
    /* none fits: build below */
  }
}

if (prebuild) {
  const rec = loader.readBuildRecord(prebuild);
  log(`using the prebuild ${relative(root, prebuild)} (Node-API ${rec?.napiVersion ?? '?'}, built against libtorch ${rec?.libtorch.full ?? '?'}); nothing is compiled`);
  try {
    const { chosen } = loader.findLibtorch(rec, { packageRoot: root, cwd: process.env.INIT_CWD || process.cwd() });
    log(`libtorch ${chosen.full} found at ${chosen.root} (${chosen.source})`);
  } catch (err) {
    // Not fatal: torch may be installed after this package. The same message comes at run time.
    console.warn(`heimdall-torch install: warning: ${err.message}`);
  }
  process.exit(0);
}

log(forced ? 'building from source (requested)' : `no prebuild fits ${process.platform}-${process.arch}: building from source with cmake-js`);
let chosen;
try {
  ({ chosen } = loader.findLibtorch(null, { packageRoot: root, cwd: process.env.INIT_CWD || process.cwd() }));
} catch (err) {
  console.error(`heimdall-torch install: ${err.message}`);
  process.exit(1);
}
log(`libtorch ${chosen.full} at ${chosen.root} (${chosen.source})`);
const cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', 'build'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, LIBTORCH: chosen.root },
});
if (r.status !== 0 || !existsSync(join(root, 'build', 'Release', 'heimdall_torch.node'))) {
  console.error('heimdall-torch install: the source build failed (see above). It needs cmake ≥ 3.18 and a C++20 compiler ' +
    '(gcc ≥ 12): `apt-get install build-essential cmake`, then `npm rebuild heimdall-torch`.');
  process.exit(1);
}
log('built build/Release/heimdall_torch.node');
