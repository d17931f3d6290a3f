// Downloads from a store or server that is not trustworthy (issue 14, findings 1 and 2): a listing can name
// files with `..` segments (legal S3 keys, or any artifact proxy's answer), and a URI can end in `/.`. Nothing may
// be written outside the download folder, and cleanup removes exactly the temporary folder the download made.
// The server here is a small HTTP server speaking the mlflow-artifacts proxy API and answering what a hostile
// or broken one would: no real MLflow server produces these answers.
import { createServer, type Server } from 'node:http';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../lib/index.js';
import { fetchArtifact } from '../../lib/inference/artifacts.js';
import { loadTrackerConfig } from '../../lib/config.js';
import { tempDir } from '../helpers/tmp.js';

const LIST = '/api/2.0/mlflow-artifacts/artifacts';
const root = tempDir('heimdall-hostile-');
let n = 0;
const sub = (name: string) => {
  const d = join(root, `${name}-${n++}`);
  mkdirSync(d);
  return d;
};
let server: Server;
let port = 0;
const downloads: string[] = [];
/** The Authorization header of every request the server got, in order ('' when none). */
const auths: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    auths.push(req.headers.authorization ?? '');
    if (url.pathname === LIST) {
      const p = url.searchParams.get('path') ?? '';
      const files = p.endsWith('escape') ? [{ path: `${p}/../../../escaped.txt`, is_dir: false }]
        : /model(\/\.)?$/.test(p) ? [{ path: `${p}/model.onnx`, is_dir: false }]
          : p.endsWith('broken') ? [{ path: `${p}/weights.bin`, is_dir: false }]
            : [];
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ files }));
      return;
    }
    if (url.pathname.startsWith(`${LIST}/`)) {
      downloads.push(decodeURIComponent(url.pathname.slice(LIST.length + 1)));
      if (url.pathname.includes('broken')) res.writeHead(500).end('internal error');
      else res.writeHead(200, { 'Content-Type': 'application/octet-stream' }).end('this is not an ONNX model');
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

/** Runs `fn` with os.tmpdir() pointing at a fresh folder of the test's own. */
async function withTmpdir<T>(fn: (tmp: string) => Promise<T>): Promise<{ tmp: string; result: PromiseSettledResult<T> }> {
  const tmp = sub('tmp');
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
  try {
    const result = await fn(tmp).then((value) => ({ status: 'fulfilled', value }) as const, (reason: unknown) => ({ status: 'rejected', reason }) as const);
    return { tmp, result };
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  }
}

describe('downloads from an untrustworthy artifact server', () => {
  it('refuses a listed file name that leaves the download folder, before downloading anything', async () => {
    const dir = sub('escape');
    const dest = join(dir, 'dl');
    const uri = `mlflow-artifacts://127.0.0.1:${port}/0/run/artifacts/escape`;
    const before = downloads.length;
    await expect(fetchArtifact(uri, loadTrackerConfig({ trackingUri: `http://127.0.0.1:${port}` }), dest))
      .rejects.toMatchObject({ code: 'HEIMDALL_BAD_FILE', message: expect.stringContaining('outside the download folder') });
    expect(existsSync(resolve(dest, 'escape', '../../../escaped.txt'))).toBe(false);
    expect(downloads.length).toBe(before);
  });

  it('loadModel of a URI ending in /. removes only its own temporary folder', async () => {
    const dir = sub('dot');
    const { tmp, result } = await withTmpdir(() =>
      loadModel(`mlflow-artifacts://127.0.0.1:${port}/0/run/artifacts/model/.`, { trackerOptions: { trackingUri: `sqlite:///${join(dir, 'mlflow.db')}` } }));
    // The file it fetched is not an ONNX model: the load fails, with the file downloaded as 'model/model.onnx'.
    expect(result.status).toBe('rejected');
    expect(downloads.at(-1)).toBe('0/run/artifacts/model/model.onnx');
    // The temporary folder's parent (os.tmpdir()) is still there; the download's own folder is gone.
    expect(existsSync(tmp)).toBe(true);
    expect(readdirSync(tmp)).toEqual([]);
  });

  it('a download that fails removes the temporary folder it made', async () => {
    const { tmp, result } = await withTmpdir(() =>
      fetchArtifact(`mlflow-artifacts://127.0.0.1:${port}/0/run/artifacts/broken`, loadTrackerConfig({ trackingUri: `http://127.0.0.1:${port}` })));
    expect(result.status).toBe('rejected');
    expect((result as PromiseRejectedResult).reason).toMatchObject({ message: expect.stringContaining('HTTP 500') });
    expect(readdirSync(tmp)).toEqual([]);
  });

  it('sends the tracking token only to the tracking server\'s own origin, never to the host an artifact URI names', async () => {
    const uri = `mlflow-artifacts://127.0.0.1:${port}/0/run/artifacts/model`;
    const token = 'tok-Stays-Home-7731';
    // The tracking server is elsewhere (localhost:1 is another origin than 127.0.0.1:port): no credentials.
    let from = auths.length;
    await fetchArtifact(uri, loadTrackerConfig({ trackingUri: 'http://localhost:1', trackingToken: token }), join(sub('other'), 'dl'));
    expect(auths.length).toBeGreaterThan(from);
    expect(auths.slice(from)).toEqual(auths.slice(from).map(() => ''));
    // The same server as the tracking URI: the token goes with every request.
    from = auths.length;
    await fetchArtifact(uri, loadTrackerConfig({ trackingUri: `http://127.0.0.1:${port}`, trackingToken: token }), join(sub('same'), 'dl'));
    expect(auths.length).toBeGreaterThan(from);
    expect(new Set(auths.slice(from))).toEqual(new Set([`Bearer ${token}`]));
  });
});
