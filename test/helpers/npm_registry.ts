// A local npm registry for install tests with no network: it serves the packages of a node_modules folder (the
// project's, as `npm ci` installed them from the lockfile) — one packument per name listing the versions found
// there, and each version's tarball packed on first request (the folder's files under `package/`, without its
// nested node_modules and, for packages with an install step, without the build/ that step made). npm pointed at
// it (npm_config_registry) resolves and installs exactly these versions; nothing else is reachable.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

interface Pkg { dir: string; manifest: Record<string, unknown> }

export interface LocalRegistry {
  url: string;
  /** Names of the packages whose packument or tarball npm asked for. */
  requested: Set<string>;
  close(): Promise<void>;
}

/** Every package folder under `nodeModules` (scoped and nested ones included). */
function scan(nodeModules: string, into: Map<string, Map<string, Pkg>>): void {
  if (!existsSync(nodeModules)) return;
  for (const entry of readdirSync(nodeModules)) {
    if (entry.startsWith('.')) continue;
    const dirs = entry.startsWith('@') ? readdirSync(join(nodeModules, entry)).map((s) => join(nodeModules, entry, s)) : [join(nodeModules, entry)];
    for (const dir of dirs) {
      const pj = join(dir, 'package.json');
      if (!existsSync(pj)) continue;
      const manifest = JSON.parse(readFileSync(pj, 'utf8')) as Record<string, unknown>;
      const name = manifest.name as string;
      const version = manifest.version as string;
      if (!name || !version) continue;
      if (!into.has(name)) into.set(name, new Map());
      into.get(name)!.set(version, { dir, manifest });
      scan(join(dir, 'node_modules'), into);
    }
  }
}

const cmpVersions = (a: string, b: string) => {
  const pa = a.split(/[.-]/).map((x) => Number(x));
  const pb = b.split(/[.-]/).map((x) => Number(x));
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
};

function pack(pkg: Pkg, out: string): Promise<void> {
  const scripts = (pkg.manifest.scripts ?? {}) as Record<string, string>;
  const built = Boolean(scripts.install || scripts.preinstall || scripts.postinstall);
  const args = ['-czf', out, '--exclude=./node_modules', ...(built ? ['--exclude=./build'] : []), '--transform', 's,^\\.,package,', '-C', pkg.dir, '.'];
  return new Promise((resolve, reject) => {
    const p = spawn('tar', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`tar ${pkg.dir}: ${err}`))));
  });
}

export async function startLocalRegistry(nodeModules: string, workDir: string): Promise<LocalRegistry> {
  const pkgs = new Map<string, Map<string, Pkg>>();
  scan(nodeModules, pkgs);
  const tarDir = join(workDir, 'tarballs');
  mkdirSync(tarDir, { recursive: true });
  const packing = new Map<string, Promise<void>>();
  const requested = new Set<string>();
  let base = '';
  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = decodeURIComponent((req.url ?? '/').split('?')[0]!.slice(1));
      const tar = /^-\/tarball\/(.+)\/(\d+\.\d+\.\d+[^/]*)\.tgz$/.exec(path);
      if (tar) {
        const pkg = pkgs.get(tar[1]!)?.get(tar[2]!);
        if (!pkg) { res.writeHead(404).end(); return; }
        requested.add(tar[1]!);
        const file = join(tarDir, `${tar[1]!.replace('/', '+')}-${tar[2]}.tgz`);
        if (!packing.has(file)) packing.set(file, pack(pkg, file));
        await packing.get(file);
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.end(readFileSync(file));
        return;
      }
      const versions = pkgs.get(path);
      if (!versions) { res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}'); return; }
      requested.add(path);
      const sorted = [...versions.keys()].sort(cmpVersions);
      const doc = {
        name: path,
        'dist-tags': { latest: sorted[sorted.length - 1] },
        versions: Object.fromEntries(sorted.map((v) => {
          const m = versions.get(v)!.manifest;
          return [v, { ...m, dist: { tarball: `${base}-/tarball/${path}/${v}.tgz` } }];
        })),
      };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(doc));
    })().catch((e: Error) => { res.writeHead(500).end(e.message); });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return {
    url: base,
    requested,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
