// Reading artifacts back from the stores the tracker writes (lib/tracking/artifacts.ts uploads): a local path
// or file://, s3://bucket/key (MinIO/AWS, with the tracker's S3 settings), and mlflow-artifacts:/ through a
// tracking server's artifact proxy. A URI names a file or a directory; a directory is fetched recursively.
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, posix, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { redact, type TrackerConfig } from '../config.js';
import { createS3Client } from '../tracking/artifacts.js';
import { authorizationFor } from '../tracking/credentials.js';
import { httpRequest } from '../tracking/rest/http.js';
import { parseArtifactLocation, type ArtifactRepositoryKind } from '../tracking/schemes.js';
import { badFile, badInput, InferenceError, notFound } from './errors.js';

export interface FetchedArtifact {
  /** The local file or directory. */
  localPath: string;
  isDir: boolean;
  /** Files below localPath (relative, '/'-separated); [basename] for a file. */
  files: string[];
  /** True when localPath is a download. */
  downloaded: boolean;
  /**
   * The temporary directory this call created for the download (no `dest` given): the one folder the caller
   * removes when done. Never the system's temporary folder itself, whatever the URI or the server answers.
   */
  downloadRoot?: string;
}

/** The kind of repository `uri` names (the tracker's one table, lib/tracking/schemes.ts); unknown kinds are refused. */
function repositoryKind(uri: string): ArtifactRepositoryKind {
  const { kind, problem } = parseArtifactLocation(uri);
  if (kind === null) throw badInput(problem);
  return kind;
}

/** The local path of a local artifact URI (a path or file://). */
export function localPathOf(uri: string): string {
  return /^file:/i.test(uri) ? fileURLToPath(uri.replace(/^file:\/\/(?!\/)/, 'file:///')) : resolve(uri);
}

/** `root` + `/` + `path`, for any of the URI kinds. */
export function joinArtifactUri(root: string, path: string): string {
  const p = path.replace(/^\/+|\/+$/g, '');
  return p ? `${root.replace(/\/+$/, '')}/${p}` : root;
}

async function walkLocal(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await walkLocal(join(dir, e.name), rel)));
    else if (e.isFile()) out.push(rel);
  }
  return out.sort();
}

/** The download folder: `dest` (made if missing), or a new temporary directory (`created`). */
async function downloadDir(destRoot: string | undefined): Promise<{ root: string; created?: string }> {
  if (destRoot) {
    await mkdir(destRoot, { recursive: true });
    return { root: destRoot };
  }
  const root = await mkdtemp(join(tmpdir(), 'heimdall-artifact-'));
  return { root, created: root };
}

/** A remote path with `.` segments and trailing slashes dropped (`model/.` → `model`). */
function normalizeRemotePath(path: string): string {
  return path.split('/').filter((s) => s !== '.').join('/').replace(/\/+$/, '');
}

/** The local name of a downloaded artifact: its last path segment, or `fallback` for '', '.' or '..'. */
function artifactName(path: string, fallback: string): string {
  const last = path.split('/').filter((s) => s && s !== '.').at(-1);
  return !last || last === '..' ? fallback : last;
}

/**
 * `base/rel` for a file name that a remote listing gave (S3 keys and proxy listings may hold `..`, absolute or
 * empty segments): refuses any name that would land outside `base`.
 */
function localFile(base: string, rel: string, uri: string): string {
  const segs = rel.split('/');
  const bad = !rel || segs.some((s) => s === '' || s === '.' || s === '..' || s.includes('\\') || s.includes('\0'));
  const out = join(base, ...segs);
  if (bad || !out.startsWith(base + sep)) {
    throw badFile(`artifact ${uri} lists a file named '${rel.slice(0, 200)}', which would be written outside the download ` +
      `folder ${base}: refused, nothing was written there. Check who can write to that store or server.`);
  }
  return out;
}

/** Runs a download into `dl`; on failure removes the temporary directory it created, then rethrows. */
async function cleanOnFailure<T>(dl: { created?: string }, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (dl.created) await rm(dl.created, { recursive: true, force: true }).catch(() => undefined);
    throw e;
  }
}

// ---- S3 --------------------------------------------------------------------------------------------------

function s3Failure(uri: string, e: unknown): InferenceError {
  const err = e as Error & { name?: string; $metadata?: { httpStatusCode?: number } };
  if (err.name === 'NoSuchKey' || err.name === 'NotFound' || err.$metadata?.httpStatusCode === 404) return notFound(`artifact ${uri} is not there`, e);
  if (err.name === 'NoSuchBucket') return notFound(`artifact ${uri}: the bucket does not exist`, e);
  const status = err.$metadata?.httpStatusCode ? ` (HTTP ${err.$metadata.httpStatusCode})` : '';
  return new InferenceError('HEIMDALL_NOT_FOUND', `cannot read artifact ${uri} from S3${status}: ${redact(err.message)}`, { cause: e });
}

async function fetchS3(uri: string, cfg: TrackerConfig, dest?: string): Promise<FetchedArtifact> {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/i.exec(uri);
  if (!m) throw badInput(`invalid S3 URI '${uri}'`);
  const bucket = m[1]!;
  const key = normalizeRemotePath(m[2]!);
  const { ListObjectsV2Command, GetObjectCommand } = await import('@aws-sdk/client-s3');
  const client = await createS3Client(cfg);
  try {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: key ? `${key}/` : '', ContinuationToken: token }))
        .catch((e: unknown) => { throw s3Failure(uri, e); });
      for (const o of r.Contents ?? []) if (o.Key && !o.Key.endsWith('/')) keys.push(o.Key);
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    const get = async (k: string, file: string) => {
      const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: k })).catch((e: unknown) => { throw s3Failure(`s3://${bucket}/${k}`, e); });
      await mkdir(dirname(file), { recursive: true });
      await pipeline(r.Body as Readable, createWriteStream(file));
    };
    const dl = await downloadDir(dest);
    const name = artifactName(key, bucket);
    const base = join(dl.root, name);
    return await cleanOnFailure(dl, async () => {
      if (keys.length) {
        const files = keys.map((k) => k.slice(key ? key.length + 1 : 0)).sort();
        const targets = files.map((f) => localFile(base, f, uri)); // all checked before anything is written
        for (const [i, f] of files.entries()) await get(key ? `${key}/${f}` : f, targets[i]!);
        return { localPath: base, isDir: true, files, downloaded: true, downloadRoot: dl.created };
      }
      await get(key, base);
      return { localPath: base, isDir: false, files: [name], downloaded: true, downloadRoot: dl.created };
    });
  } finally {
    client.destroy();
  }
}

// ---- mlflow-artifacts:/ (the tracking server's proxy) -----------------------------------------------------
function proxyBase(uri: string, cfg: TrackerConfig): { base: string; path: string } {
  const m = /^mlflow-artifacts:(?:\/\/([^/]+))?\/?(.*)$/i.exec(uri)!;
  const path = normalizeRemotePath(m[2] ?? '');
  if (m[1]) return { base: `${/^https:/i.test(cfg.trackingUri) ? 'https' : 'http'}://${m[1]}`, path };
  if (!/^https?:/i.test(cfg.trackingUri)) {
    throw badInput(`artifact ${uri} is served by an MLflow tracking server: set MLFLOW_TRACKING_URI to its http(s) address (now '${redact(cfg.trackingUri)}')`);
  }
  return { base: cfg.trackingUri.replace(/\/+$/, ''), path };
}

async function proxyGet(cfg: TrackerConfig, url: string, what: string): Promise<Buffer> {
  let res;
  try {
    res = await httpRequest({ method: 'GET', url, headers: authorizationFor(url, cfg), timeoutMs: cfg.httpRequestTimeoutS * 1000, insecureTls: cfg.trackingInsecureTls });
  } catch (e) {
    throw new InferenceError('HEIMDALL_NOT_FOUND', `cannot reach the MLflow artifact proxy for ${what}: ${redact((e as Error).message)}`, { cause: e });
  }
  if (res.status === 404) throw notFound(`artifact ${what} is not there`);
  if (res.status < 200 || res.status >= 300) {
    throw new InferenceError('HEIMDALL_NOT_FOUND', `the MLflow artifact proxy answered HTTP ${res.status} for ${what}: ${redact(res.body.toString('utf8').slice(0, 300))}`);
  }
  return res.body;
}

/** Bounds of a proxy's listing (folders deep, files in all) that a download follows. */
const MAX_LISTING_DEPTH = 32;
const MAX_LISTED_FILES = 100_000;

const enc = (p: string) => p.split('/').map(encodeURIComponent).join('/');

async function proxyList(cfg: TrackerConfig, base: string, path: string, uri: string): Promise<{ path: string; isDir: boolean }[]> {
  const body = await proxyGet(cfg, `${base}/api/2.0/mlflow-artifacts/artifacts?path=${encodeURIComponent(path)}`, uri);
  const bad = (what: string) => badFile(`the MLflow artifact proxy's listing of ${uri}${path ? ` (${path})` : ''} is not MLflow's: ${what}`);
  let answer: unknown;
  try { answer = JSON.parse(body.toString('utf8')); } catch { throw bad(`not JSON: ${JSON.stringify(body.toString('utf8').slice(0, 120))}`); }
  if (typeof answer !== 'object' || answer === null || Array.isArray(answer)) throw bad('not a JSON object');
  const files = (answer as { files?: unknown }).files ?? [];
  if (!Array.isArray(files)) throw bad('"files" is not a list');
  // Entries are named relative to the listed folder.
  return files.map((f: unknown) => {
    const e = f as { path?: unknown; is_dir?: unknown } | null;
    if (typeof e !== 'object' || e === null || typeof e.path !== 'string') throw bad('an entry without a path');
    return { path: e.path.startsWith(`${path}/`) ? e.path.slice(path.length + 1) : posix.basename(e.path), isDir: e.is_dir === true };
  });
}

async function fetchProxy(uri: string, cfg: TrackerConfig, dest?: string): Promise<FetchedArtifact> {
  const { base, path } = proxyBase(uri, cfg);
  const files: string[] = [];
  // A listing names what it holds; a hostile or broken proxy could name folders without end: bounded.
  const walk = async (rel: string, depth: number): Promise<void> => {
    if (depth > MAX_LISTING_DEPTH) throw badFile(`the MLflow artifact proxy lists folders ${MAX_LISTING_DEPTH} deep under ${uri}: not a model directory`);
    const full = rel ? `${path}/${rel}` : path;
    for (const e of await proxyList(cfg, base, full, uri)) {
      const r = rel ? `${rel}/${e.path}` : e.path;
      if (e.isDir) await walk(r, depth + 1);
      else files.push(r);
      if (files.length > MAX_LISTED_FILES) throw badFile(`the MLflow artifact proxy lists more than ${MAX_LISTED_FILES} files under ${uri}: not a model directory`);
    }
  };
  await walk('', 0);
  const dl = await downloadDir(dest);
  const name = artifactName(path, 'artifacts');
  const local = join(dl.root, name);
  const get = async (p: string, file: string) => {
    const data = await proxyGet(cfg, `${base}/api/2.0/mlflow-artifacts/artifacts/${enc(p)}`, p === path ? uri : `${uri}/${p.slice(path.length + 1)}`);
    await mkdir(dirname(file), { recursive: true });
    await pipeline(Readable.from([data]), createWriteStream(file));
  };
  return cleanOnFailure(dl, async () => {
    if (files.length) {
      files.sort();
      const targets = files.map((f) => localFile(local, f, uri)); // all checked before anything is written
      for (const [i, f] of files.entries()) await get(`${path}/${f}`, targets[i]!);
      return { localPath: local, isDir: true, files, downloaded: true, downloadRoot: dl.created };
    }
    await get(path, local);
    return { localPath: local, isDir: false, files: [name], downloaded: true, downloadRoot: dl.created };
  });
}

/**
 * Makes the artifact at `uri` available locally: a local one is used where it is; a remote one is
 * downloaded into `dest` (default: a new temporary directory). Throws HEIMDALL_NOT_FOUND naming the URI
 * when nothing is there.
 */
export async function fetchArtifact(uri: string, cfg: TrackerConfig, dest?: string): Promise<FetchedArtifact> {
  const kind = repositoryKind(uri);
  if (kind === 's3') return fetchS3(uri, cfg, dest);
  if (kind === 'mlflow-artifacts') return fetchProxy(uri, cfg, dest);
  const p = localPathOf(uri);
  const st = await stat(p).catch(() => null);
  if (!st) throw notFound(`artifact ${p} is not there`);
  if (st.isDirectory()) return { localPath: p, isDir: true, files: await walkLocal(p), downloaded: false };
  return { localPath: p, isDir: false, files: [posix.basename(p.split('\\').join('/'))], downloaded: false };
}

/** The names directly inside the artifact directory `uri` (files and folders), [] when it holds nothing. */
export async function listArtifactDir(uri: string, cfg: TrackerConfig): Promise<{ path: string; isDir: boolean }[]> {
  const kind = repositoryKind(uri);
  if (kind === 'mlflow-artifacts') {
    const { base, path } = proxyBase(uri, cfg);
    return proxyList(cfg, base, path, uri).catch((e: InferenceError) => {
      if (e.code === 'HEIMDALL_NOT_FOUND' && /is not there/.test(e.message)) return [];
      throw e;
    });
  }
  if (kind === 's3') {
    const m = /^s3:\/\/([^/]+)\/?(.*)$/i.exec(uri)!;
    const key = m[2]!.replace(/\/+$/, '');
    const { ListObjectsV2Command } = await import('@aws-sdk/client-s3');
    const client = await createS3Client(cfg);
    try {
      const r = await client.send(new ListObjectsV2Command({ Bucket: m[1]!, Prefix: key ? `${key}/` : '', Delimiter: '/' }))
        .catch((e: unknown) => { throw s3Failure(uri, e); });
      const strip = (k: string) => k.slice(key ? key.length + 1 : 0).replace(/\/$/, '');
      return [
        ...(r.CommonPrefixes ?? []).map((p) => ({ path: strip(p.Prefix!), isDir: true })),
        ...(r.Contents ?? []).filter((o) => o.Key && !o.Key.endsWith('/')).map((o) => ({ path: strip(o.Key!), isDir: false })),
      ].sort((a, b) => a.path.localeCompare(b.path));
    } finally {
      client.destroy();
    }
  }
  const p = localPathOf(uri);
  const entries = await readdir(p, { withFileTypes: true }).catch(() => []);
  return entries.map((e) => ({ path: e.name, isDir: e.isDirectory() })).sort((a, b) => a.path.localeCompare(b.path));
}
