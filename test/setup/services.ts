// Global test setup: starts the real services the tests use, in parallel, and tears them down.
//  - a throwaway PostgreSQL cluster on 127.0.0.1 (random port, temp dir)
//  - an `mlflow server` from .venv on a SQLite backend with --serve-artifacts
//  - an S3-compatible server process (MinIO if .ci/setup built it, else moto's server mode)
// Tests read the addresses with `inject('…')`. A service that cannot start fails the run with its reason.
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startMlflowServer, startPostgres, startS3, type MlflowServer, type PgServer, type S3Server } from '../tracking/helpers/services.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgUri: string;
    pgPort: number;
    mlflowUri: string;
    s3: { kind: 'minio' | 'moto'; endpoint: string; accessKeyId: string; secretAccessKey: string };
  }
}

const RUN_ROOT_PREFIX = 'heimdall-tests-';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One directory for everything this run writes to the temporary directory — the tests' files, the services'
 * data, what the library and Python make with mkdtemp — set as TMPDIR for the test processes (and whatever
 * they start) and removed at the end. Roots left by runs that were killed (their owner is gone) are removed
 * first: a CI machine's disk filled up with them once.
 */
function makeRunRoot(): string {
  const base = tmpdir();
  for (const name of readdirSync(base)) {
    if (!name.startsWith(RUN_ROOT_PREFIX)) continue;
    const dir = join(base, name);
    let owner = NaN;
    try { owner = Number(readFileSync(join(dir, 'owner.pid'), 'utf8')); } catch { /* no owner file: being made, or broken */ }
    if (Number.isInteger(owner) && owner > 0 && alive(owner)) continue;
    if (!Number.isInteger(owner) && existsSync(join(dir, 'owner.pid'))) continue;
    try { if (Date.now() - statSync(dir).mtimeMs < 60_000) continue; } catch { continue; } // just made by another run
    try { rmSync(dir, { recursive: true, force: true }); } catch { /* a mount left behind: leave it */ }
  }
  const root = mkdtempSync(join(base, RUN_ROOT_PREFIX));
  chmodSync(root, 0o711); // the PostgreSQL server runs as its own user, below this directory
  writeFileSync(join(root, 'owner.pid'), String(process.pid));
  return root;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const t0 = Date.now();
  const runRoot = makeRunRoot();
  process.env.TMPDIR = runRoot;
  // The AWS SDK warns on every process that Node 20 support ends in 2027: noise in test output.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const results = await Promise.allSettled([startPostgres(), startMlflowServer(), startS3()]);
  const [pg, mlflow, s3] = results;
  const started: { destroy(): Promise<void> }[] = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const teardown = async () => {
    await Promise.allSettled(started.map((s) => s.destroy()));
    try { rmSync(runRoot, { recursive: true, force: true }); } catch (e) { process.stderr.write(`could not remove ${runRoot}: ${(e as Error).message}\n`); }
  };
  const failures = results
    .map((r, i) => (r.status === 'rejected' ? `${['PostgreSQL', 'mlflow server', 'S3 server'][i]}: ${(r.reason as Error).message}` : null))
    .filter(Boolean);
  if (failures.length) {
    await teardown();
    throw new Error(`test services failed to start:\n${failures.join('\n')}`);
  }
  const p = (pg as PromiseFulfilledResult<PgServer>).value;
  const m = (mlflow as PromiseFulfilledResult<MlflowServer>).value;
  const s = (s3 as PromiseFulfilledResult<S3Server>).value;
  project.provide('pgUri', p.uri);
  project.provide('pgPort', p.port);
  project.provide('mlflowUri', m.uri);
  project.provide('s3', { kind: s.kind, endpoint: s.endpoint, accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey });
  process.stdout.write(`test services ready in ${Date.now() - t0} ms: PostgreSQL :${p.port}, mlflow server ${m.uri}, ${s.kind} S3 ${s.endpoint}\n`);
  return teardown;
}
