// Global test setup: starts the real services the tests use, in parallel, and tears them down.
//  - a throwaway PostgreSQL cluster on 127.0.0.1 (random port, temp dir)
//  - an `mlflow server` from .venv on a SQLite backend with --serve-artifacts
//  - an S3-compatible server process (MinIO if .ci/setup built it, else moto's server mode)
// Tests read the addresses with `inject('…')`. A service that cannot start fails the run with its reason.
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

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const t0 = Date.now();
  // The AWS SDK warns on every process that Node 20 support ends in 2027: noise in test output.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const results = await Promise.allSettled([startPostgres(), startMlflowServer(), startS3()]);
  const [pg, mlflow, s3] = results;
  const started: { destroy(): Promise<void> }[] = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const teardown = async () => {
    await Promise.allSettled(started.map((s) => s.destroy()));
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
