// Artifact repositories by the run's artifact URI: a local path or file://, s3://bucket/prefix, and
// mlflow-artifacts:/ through a tracking server's proxy (artifactRepositoryFor picks one). Each upload records the file's SHA-256.
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { copyFile, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { basename, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TrackerConfig } from '../config.js';
import { authorizationFor, originOf } from './credentials.js';
import { invalidParameter, isOutOfSpace, MlflowError } from './errors.js';
import { errorFromResponse, httpRequest } from './rest/http.js';
import { parseArtifactLocation, parseTrackingUri, type ArtifactRepositoryKind } from './schemes.js';
import { validateArtifactPath } from './validation.js';

export interface UploadedArtifact {
  /** Path inside the run's artifact root. */
  path: string;
  /** Full URI of the stored artifact. */
  uri: string;
  size: number;
  sha256: string;
}

export interface ArtifactRepository {
  readonly rootUri: string;
  /** Uploads one file into `artifactPath` (a directory inside the run's root). */
  logArtifact(localFile: string, artifactPath?: string): Promise<UploadedArtifact[]>;
  /** Uploads a directory's contents recursively into `artifactPath`. */
  logArtifacts(localDir: string, artifactPath?: string): Promise<UploadedArtifact[]>;
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * What an upload will send, fixed when the worker takes it: a digest of the file's size, modification time (ns)
 * and inode — of each file's, with its relative path, for a directory. A spooled upload whose files changed by the
 * time it is delivered is refused (see Delivery), so that a late upload never sends a later version of the file.
 * Metadata, not content: every upload is read once (to send it), not three times; like make and rsync, a rewrite
 * that restores both size and mtime goes unnoticed. Synchronous: it runs on the worker thread, never the caller's.
 */
export function fingerprintSync(local: string, dir: boolean): string {
  const stamp = (f: string): string => {
    const st = statSync(f, { bigint: true });
    return `${st.size}:${st.mtimeNs}:${st.ino}`;
  };
  const h = createHash('sha256');
  if (!dir) return h.update(stamp(local)).digest('hex');
  const files: string[] = [];
  const walkSync = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walkSync(p);
      else if (e.isFile()) files.push(p);
    }
  };
  walkSync(local);
  for (const f of files.sort()) h.update(`${relative(local, f).split(sep).join('/')}\0${stamp(f)}\n`);
  return h.digest('hex');
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else if (e.isFile()) out.push(p);
  }
  return out.sort();
}

function joinPath(...parts: string[]): string {
  return parts.filter((p) => p !== '').join('/');
}

abstract class BaseRepository implements ArtifactRepository {
  constructor(readonly rootUri: string) {}
  protected abstract put(localFile: string, destPath: string, size: number, sha256: string): Promise<string>;

  async logArtifact(localFile: string, artifactPath?: string): Promise<UploadedArtifact[]> {
    const dir = validateArtifactPath(artifactPath);
    const st = await stat(localFile).catch(() => null);
    if (!st?.isFile()) throw invalidParameter(`logArtifact: '${localFile}' is not a file`);
    const dest = joinPath(dir, basename(localFile));
    const sha = await sha256File(localFile);
    const uri = await this.put(localFile, dest, st.size, sha);
    return [{ path: dest, uri, size: st.size, sha256: sha }];
  }

  async logArtifacts(localDir: string, artifactPath?: string): Promise<UploadedArtifact[]> {
    const dir = validateArtifactPath(artifactPath);
    const st = await stat(localDir).catch(() => null);
    if (!st?.isDirectory()) throw invalidParameter(`logArtifacts: '${localDir}' is not a directory`);
    const out: UploadedArtifact[] = [];
    for (const f of await walk(localDir)) {
      const rel = relative(localDir, f).split(sep).join('/');
      const dest = joinPath(dir, rel);
      const s = await stat(f);
      const sha = await sha256File(f);
      out.push({ path: dest, uri: await this.put(f, dest, s.size, sha), size: s.size, sha256: sha });
    }
    return out;
  }
}

class LocalRepository extends BaseRepository {
  private readonly dir: string;
  constructor(rootUri: string) {
    super(rootUri);
    this.dir = rootUri.startsWith('file:') ? fileURLToPath(rootUri.replace(/^file:\/\/(?!\/)/, 'file:///')) : resolve(rootUri);
  }
  protected async put(localFile: string, destPath: string): Promise<string> {
    const target = join(this.dir, ...destPath.split('/'));
    try {
      await mkdir(join(target, '..'), { recursive: true });
      await copyFile(localFile, target);
    } catch (e) {
      if (!isOutOfSpace(e)) throw e;
      await rm(target, { force: true }).catch(() => undefined); // no partial copy left to be read as the artifact
      throw new MlflowError(`artifact '${destPath}' not stored: no space left on the device of ${this.dir} (${(e as NodeJS.ErrnoException).code}). ` +
        'Free space there (or log to another artifact location) and log it again; what the run logged before is kept', 'INTERNAL_ERROR', { cause: e });
    }
    return target;
  }
}

class S3Repository extends BaseRepository {
  private readonly bucket: string;
  private readonly prefix: string;
  private client: unknown;
  constructor(rootUri: string, private readonly cfg: TrackerConfig) {
    super(rootUri);
    const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(rootUri);
    if (!m) throw invalidParameter(`Invalid S3 URI '${rootUri}'`);
    this.bucket = m[1]!;
    this.prefix = m[2]!.replace(/\/+$/, '');
  }
  private async s3(): Promise<import('@aws-sdk/client-s3').S3Client> {
    if (!this.client) this.client = await createS3Client(this.cfg);
    return this.client as import('@aws-sdk/client-s3').S3Client;
  }
  protected async put(localFile: string, destPath: string, size: number, sha256: string): Promise<string> {
    const key = joinPath(this.prefix, destPath);
    const client = await this.s3();
    const { Upload } = await import('@aws-sdk/lib-storage');
    // lib-storage switches to a multipart upload above one part (8 MiB here), 2 parts in flight.
    const up = new Upload({
      client,
      params: { Bucket: this.bucket, Key: key, Body: size > 0 ? createReadStream(localFile) : Buffer.alloc(0), Metadata: { sha256 } },
      partSize: 8 * 1024 * 1024,
      queueSize: 2,
    });
    try {
      await up.done();
    } catch (e) {
      const x = e as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
      if (x.$metadata?.httpStatusCode === 507 || /StorageFull|InsufficientStorage/i.test(`${x.name ?? ''} ${x.Code ?? ''}`)) {
        throw new MlflowError(`artifact upload to s3://${this.bucket}/${key} refused: the S3 server is out of storage (HTTP 507 ${x.Code ?? x.name ?? ''}). ` +
          'Free space on the server (or log to another bucket) and log it again; what the run logged before is kept', 'INTERNAL_ERROR', { httpStatus: 507, cause: e });
      }
      if (x.name === 'NoSuchUpload' || x.Code === 'NoSuchUpload') {
        // The server lost the multipart upload this call had just started (MinIO does when its disk fills up
        // mid-way): the whole file is sent again, like any transient failure.
        throw new MlflowError(`artifact upload to s3://${this.bucket}/${key}: the S3 server lost the multipart upload mid-way (NoSuchUpload)`, 'TEMPORARILY_UNAVAILABLE', { retryable: true, cause: e });
      }
      throw e;
    }
    return `s3://${this.bucket}/${key}`;
  }
}

class MlflowArtifactsRepository extends BaseRepository {
  private readonly path: string;
  constructor(rootUri: string, private readonly cfg: TrackerConfig) {
    super(rootUri);
    // mlflow-artifacts:/<path> or mlflow-artifacts://host:port/<path>
    const m = /^mlflow-artifacts:(?:\/\/[^/]+)?\/?(.*)$/.exec(rootUri);
    this.path = (m?.[1] ?? '').replace(/\/+$/, '');
  }
  private base(): string {
    const m = /^mlflow-artifacts:\/\/([^/]+)/.exec(this.rootUri);
    if (m) {
      const proto = /^https:/i.test(this.cfg.trackingUri) ? 'https' : 'http';
      return `${proto}://${m[1]}`;
    }
    if (parseTrackingUri(this.cfg.trackingUri).kind !== 'rest') throw invalidParameter(`mlflow-artifacts:/ needs an http(s) tracking URI, got '${this.cfg.trackingUri}'`);
    return this.cfg.trackingUri.replace(/\/+$/, '');
  }
  protected async put(localFile: string, destPath: string, size: number): Promise<string> {
    const full = joinPath(this.path, destPath);
    const url = `${this.base()}/api/2.0/mlflow-artifacts/artifacts/${full.split('/').map(encodeURIComponent).join('/')}`;
    // Credentials go to the tracking server's own origin only (credentials.ts): an experiment's artifact location
    // naming another host gets the upload without them.
    const auth = authorizationFor(url, this.cfg);
    const headers: Record<string, string> = { 'Content-Length': String(size), 'Content-Type': 'application/octet-stream', ...auth };
    let res;
    try {
      res = await httpRequest({
        method: 'PUT', url, headers, body: () => createReadStream(localFile),
        timeoutMs: this.cfg.httpRequestTimeoutS * 1000, insecureTls: this.cfg.trackingInsecureTls,
      });
    } catch (e) {
      throw new MlflowError(`artifact upload to ${this.base()} failed: ${(e as Error).message}`, 'TEMPORARILY_UNAVAILABLE', { retryable: true, cause: e });
    }
    if (res.status < 200 || res.status >= 300) {
      const withheld = !auth.Authorization && (res.status === 401 || res.status === 403) && (this.cfg.trackingToken || this.cfg.trackingPassword !== undefined);
      throw errorFromResponse(res, `PUT mlflow-artifacts ${full}${withheld ? ` (${originOf(url)} is not the tracking server's origin: the tracking credentials are not sent there)` : ''}`);
    }
    return `${this.rootUri.replace(/\/+$/, '')}/${destPath}`;
  }
}

/** One constructor per kind of artifact location (which location is which kind: the table in schemes.ts). */
const REPOSITORY_FACTORIES: Record<ArtifactRepositoryKind, (uri: string, cfg: TrackerConfig) => ArtifactRepository> = {
  local: (uri) => new LocalRepository(uri),
  s3: (uri, cfg) => new S3Repository(uri, cfg),
  'mlflow-artifacts': (uri, cfg) => new MlflowArtifactsRepository(uri, cfg),
};

/** The one map from an artifact location (a run's artifact URI) to its repository: local, s3:// or the server's proxy. */
export function artifactRepositoryFor(uri: string, cfg: TrackerConfig): ArtifactRepository {
  const { kind, problem } = parseArtifactLocation(uri);
  if (kind === null) throw invalidParameter(problem);
  return REPOSITORY_FACTORIES[kind](uri, cfg);
}

/** The S3 client for the configured endpoint, region and credentials (also what inference downloads with). */
export async function createS3Client(c: TrackerConfig): Promise<import('@aws-sdk/client-s3').S3Client> {
  const { S3Client } = await import('@aws-sdk/client-s3');
  let requestHandler: unknown;
  if (c.s3IgnoreTls) {
    const https = await import('node:https');
    requestHandler = { httpsAgent: new https.Agent({ rejectUnauthorized: false }) };
  }
  return new S3Client({
    region: c.awsRegion,
    endpoint: c.s3EndpointUrl,
    forcePathStyle: Boolean(c.s3EndpointUrl),
    credentials: c.awsAccessKeyId && c.awsSecretAccessKey
      ? { accessKeyId: c.awsAccessKeyId, secretAccessKey: c.awsSecretAccessKey, sessionToken: c.awsSessionToken }
      : undefined,
    maxAttempts: 3,
    ...(requestHandler ? { requestHandler: requestHandler as never } : {}),
  });
}
