// Runtime libtorch discovery (lib/loader/libtorch.ts) against the real torch in .venv: version checks and the
// one error a user sees. The full user path (pack, install, load) is in install.test.ts.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findLibtorch, readBuildRecord, type BuildRecord } from '../../lib/loader/libtorch.js';
import { repoRoot } from '../helpers/python.js';

const built = readBuildRecord(join(repoRoot, 'build', 'Release', 'heimdall_torch.node'))!;
const venvEnv = { VIRTUAL_ENV: join(repoRoot, '.venv'), PATH: '/nonexistent', HOME: '/nonexistent' };
const as = (version: string, cxx11Abi = 1): BuildRecord => ({ ...built, libtorch: { ...built.libtorch, version, full: `${version}+cpu`, cxx11Abi, cudaBuild: false, cudaVersion: '' } });

describe('libtorch discovery', () => {
  it('the build record names the libtorch the addon was built against', () => {
    expect(built.libtorch.version).toMatch(/^2\.15\.\d+$/);
    expect(built.libtorch.cxx11Abi).toBe(1);
    expect(typeof built.libtorch.cudaBuild).toBe('boolean');
  });

  it('finds the torch of $VIRTUAL_ENV, also for another patch release', () => {
    const { chosen } = findLibtorch(as('2.15.9'), { cwd: '/', env: venvEnv });
    expect(chosen.source).toBe('VIRTUAL_ENV');
    expect(chosen.version).toBe(built.libtorch.version);
    expect(chosen.libDir).toMatch(/torch\/lib$/);
  });

  it('another minor version is refused with what was found, what is needed and the fix', () => {
    let err: any;
    try { findLibtorch(as('2.14.1'), { cwd: '/', env: { ...venvEnv, PYTHON: '/nonexistent/python3' } }); } catch (e) { err = e; }
    expect(err?.code).toBe('HEIMDALL_LIBTORCH_INCOMPATIBLE');
    expect(err.message).toMatch(/no compatible libtorch found/);
    expect(err.message).toMatch(/Needed: libtorch 2\.14\.1\+cpu \(CPU build, C\+\+11 ABI 1\)/);
    expect(err.message).toMatch(/VIRTUAL_ENV: \S+torch — libtorch 2\.15\.\S+ \((CUDA|CPU)\), incompatible: version 2\.15\.\S+, need 2\.14\.x/);
    expect(err.message).toMatch(/`pip install torch==2\.14\.1`/);
    expect(() => findLibtorch(as('2.15.0', 0), { cwd: '/', env: venvEnv })).toThrow(/C\+\+11 ABI 1, the addon was built with 0/);
  });

  it('LIBTORCH may name the torch folder or its lib/, and wins over everything else', () => {
    const { chosen } = findLibtorch(built, { cwd: '/', env: venvEnv });
    const viaLib = findLibtorch(built, { cwd: '/', env: { LIBTORCH: chosen.libDir } });
    expect(viaLib.chosen.root).toBe(chosen.root);
    expect(viaLib.chosen.source).toBe('LIBTORCH');
    expect(() => findLibtorch(as('2.14.0'), { cwd: '/', env: { ...venvEnv, LIBTORCH: chosen.root } })).toThrow(/LIBTORCH=.* is not a usable libtorch[\s\S]*need 2\.14\.x/);
  });
});
