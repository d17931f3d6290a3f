// Real services for the tracking tests: a throwaway PostgreSQL cluster, an `mlflow server` from .venv and an
// S3-compatible server (MinIO when built by .ci/setup.d/30-tracking.sh, else moto's server mode). Used by the
// global setup (shared instances) and by fault tests (private instances they stop and restart).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const VENV = join(ROOT, '.venv', 'bin');
const execFileP = promisify(execFile);

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, logFile?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch { /* not yet */ }
    if (Date.now() > deadline) {
      const log = logFile && existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-3000) : '';
      throw new Error(`${what} did not become ready within ${timeoutMs} ms${log ? `; its log ends with:\n${log}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
}

async function httpOk(url: string): Promise<boolean> {
  const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
  return r.ok;
}

// ---------------------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------------------
export function pgBinDir(): string {
  const candidates = [process.env.HEIMDALL_PG_BIN, '/usr/lib/postgresql/15/bin', '/usr/lib/postgresql/16/bin', '/usr/lib/postgresql/17/bin'];
  for (const c of candidates) if (c && existsSync(join(c, 'initdb'))) return c;
  throw new Error('PostgreSQL server binaries not found (initdb): install the Debian package postgresql (.ci/setup.d/10-system.sh) or set HEIMDALL_PG_BIN');
}

const isRoot = process.getuid?.() === 0;

async function asPostgres(cmd: string, args: string[], opts: { timeout?: number } = {}): Promise<string> {
  const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
  const { stdout } = await execFileP(file, argv, { timeout: opts.timeout ?? 60_000 });
  return stdout;
}

export interface PgServer {
  port: number;
  dataDir: string;
  /** Superuser URI of the `postgres` database. */
  uri: string;
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
  /** Creates a fresh database and returns its URI. */
  createDatabase(name: string): Promise<string>;
}

/** Creates a fresh database `<prefix>_<pid>_<random>` on the server of `adminUri` (the shared test cluster); returns its URI. */
export async function createPgDatabase(adminUri: string, prefix: string): Promise<string> {
  const name = `${prefix}_${process.pid}_${Math.floor(Math.random() * 1e6)}`;
  const admin = new pg.Client({ connectionString: adminUri });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  return adminUri.replace(/\/postgres$/, `/${name}`);
}

export async function startPostgres(): Promise<PgServer> {
  const bin = pgBinDir();
  const base = mkdtempSync(join(tmpdir(), 'heimdall-pg-'));
  chmodSync(base, 0o755);
  const dataDir = join(base, 'data');
  const log = join(base, 'postgres.log');
  if (isRoot) {
    const { stdout } = await execFileP('id', ['-u', 'postgres']);
    const uid = Number(stdout.trim());
    const gid = Number((await execFileP('id', ['-g', 'postgres'])).stdout.trim());
    chownSync(base, uid, gid);
  }
  await asPostgres(join(bin, 'initdb'), ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C']);
  const port = await freePort();
  const opts = `-p ${port} -k ${base} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100`;
  const start = async () => {
    await asPostgres(join(bin, 'pg_ctl'), ['-D', dataDir, '-o', opts, '-l', log, '-w', '-t', '30', 'start']);
  };
  const stop = async (mode: 'fast' | 'immediate' = 'fast') => {
    await asPostgres(join(bin, 'pg_ctl'), ['-D', dataDir, '-m', mode, '-w', 'stop']).catch(() => undefined);
  };
  await start();
  const uri = `postgresql://postgres@127.0.0.1:${port}/postgres`;
  return {
    port, dataDir, uri, start, stop,
    destroy: async () => {
      await stop('immediate');
      rmSync(base, { recursive: true, force: true });
    },
    createDatabase: async (name: string) => {
      await execFileP(join(bin, 'psql'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-v', 'ON_ERROR_STOP=1', '-q', '-c', `CREATE DATABASE "${name}"`]);
      return `postgresql://postgres@127.0.0.1:${port}/${name}`;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// mlflow server
// ---------------------------------------------------------------------------------------------------------
export interface MlflowServer {
  uri: string;
  port: number;
  dir: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
}

export async function startMlflowServer(opts: { backendUri?: string } = {}): Promise<MlflowServer> {
  const mlflow = join(VENV, 'mlflow');
  if (!existsSync(mlflow)) throw new Error(`${mlflow} not found: run .ci/setup (20-python) to create the .venv with mlflow`);
  const dir = mkdtempSync(join(tmpdir(), 'heimdall-mlflow-'));
  const port = await freePort();
  const backend = opts.backendUri ?? `sqlite:///${join(dir, 'mlflow.db')}`;
  const log = join(dir, 'server.log');
  let child: ChildProcess | null = null;
  const start = async () => {
    const fd = openSync(log, 'a');
    child = spawn(mlflow, [
      'server', '--backend-store-uri', backend, '--serve-artifacts', '--artifacts-destination', join(dir, 'artifacts'),
      '--host', '127.0.0.1', '--port', String(port), '--workers', '1',
    ], { cwd: dir, stdio: ['ignore', fd, fd], detached: true, env: { ...process.env, MLFLOW_TRACKING_URI: '', PYTHONUNBUFFERED: '1', MLFLOW_SERVER_ENABLE_JOB_EXECUTION: 'false' } });
    const c = child;
    let exited: number | null = null;
    c.on('exit', (code) => { exited = code ?? -1; });
    await waitFor(`mlflow server on port ${port}`, async () => {
      if (exited !== null) throw new Error(`mlflow server exited with ${exited}`);
      return httpOk(`http://127.0.0.1:${port}/health`);
    }, 90_000, log).catch((e) => {
      if (exited !== null) {
        const tail = existsSync(log) ? readFileSync(log, 'utf8').slice(-3000) : '';
        throw new Error(`mlflow server exited with code ${exited}:\n${tail}`);
      }
      throw e;
    });
  };
  const stop = async () => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((res) => {
      c.once('exit', () => res());
      try { process.kill(-c.pid!, 'SIGTERM'); } catch { res(); }
      setTimeout(() => { try { process.kill(-c.pid!, 'SIGKILL'); } catch { /* gone */ } }, 5000).unref();
    });
  };
  await start();
  return {
    uri: `http://127.0.0.1:${port}`, port, dir, start, stop,
    destroy: async () => { await stop(); rmSync(dir, { recursive: true, force: true }); },
  };
}

// ---------------------------------------------------------------------------------------------------------
// S3-compatible server
// ---------------------------------------------------------------------------------------------------------
export interface S3Server {
  kind: 'minio' | 'moto';
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Stops the server process (its data stays on disk for MinIO). */
  stop(): Promise<void>;
  /** Starts it again on the same port (and data directory). */
  start(): Promise<void>;
  destroy(): Promise<void>;
}

export function minioBinary(): string | null {
  const cache = process.env.HEIMDALL_CACHE ?? join(homedir(), '.cache', 'heimdall-torch');
  for (const c of [process.env.HEIMDALL_MINIO_BIN, join(cache, 'bin', 'minio')]) if (c && existsSync(c)) return c;
  return null;
}

/** An S3 server process; `dataDir` puts MinIO's objects there (a small disk, to fill). */
export async function startS3(opts: { dataDir?: string } = {}): Promise<S3Server> {
  const dir = mkdtempSync(join(tmpdir(), 'heimdall-s3-'));
  const data = opts.dataDir ?? join(dir, 'data');
  const port = await freePort();
  const consolePort = await freePort();
  const accessKeyId = 'heimdall-test-key';
  const secretAccessKey = 'heimdall-test-secret-0123456789';
  const log = join(dir, 'server.log');
  const minio = minioBinary();
  const kind: S3Server['kind'] = minio && process.env.HEIMDALL_S3 !== 'moto' ? 'minio' : 'moto';
  const health = kind === 'minio' ? `http://127.0.0.1:${port}/minio/health/live` : `http://127.0.0.1:${port}/moto-api/`;
  mkdirSync(data, { recursive: true });
  let child: ChildProcess | null = null;
  const start = async () => {
    const fd = openSync(log, 'a');
    const c = kind === 'minio'
      ? spawn(minio!, ['server', data, '--address', `127.0.0.1:${port}`, '--console-address', `127.0.0.1:${consolePort}`, '--quiet'], {
          stdio: ['ignore', fd, fd], detached: true,
          env: { ...process.env, MINIO_ROOT_USER: accessKeyId, MINIO_ROOT_PASSWORD: secretAccessKey, MINIO_BROWSER: 'off', MINIO_UPDATE: 'off' },
        })
      : spawn(join(VENV, 'moto_server'), ['-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', fd, fd], detached: true });
    child = c;
    let exited: number | null = null;
    c.on('exit', (code) => { exited = code ?? -1; });
    await waitFor(`${kind} S3 server on port ${port}`, async () => {
      if (exited !== null) throw new Error(`${kind} exited with ${exited}: ${readFileSync(log, 'utf8').slice(-2000)}`);
      return httpOk(health);
    }, 60_000, log);
  };
  const stop = async () => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((res) => {
      c.once('exit', () => res());
      try { process.kill(-c.pid!, 'SIGKILL'); } catch { res(); }
    });
  };
  await start();
  return {
    kind, endpoint: `http://127.0.0.1:${port}`, accessKeyId, secretAccessKey, start, stop,
    destroy: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
