// A bounded on-disk spool of logging operations kept while the backend is unreachable, delivered in order
// when it is back — by this tracker, or by the next tracker on the same spool directory after a crash or a
// close() past its deadline.
//
// Layout: <spoolDir>/<storeKey>/<owner>/seg-<n>.jsonl with one operation per line, and seg-<n>.pos holding
// how many lines of that segment were delivered. <owner>/owner.json names the process; a directory whose
// process is gone is adopted (renamed, so that only one tracker takes it) by the next tracker.
//
// Write-ahead: while the backend keeps up, the worker holds operations in memory only until they are stored; so
// that a SIGKILL or an OOM kill does not lose them, it also appends them to wal-<n>.jsonl in the same folder
// before delivery (params, tags, run ends and uploads at once, metric points within writeAheadMs), and wal.pos
// records the sequence number up to which everything is stored or in the spool. A journal file is deleted as
// soon as all its operations are; the next tracker that adopts the folder delivers the journal's operations
// beyond wal.pos after its segments.
import { createHash, randomUUID } from 'node:crypto';
import {
  appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { isSecretKey } from '../config.js';
import type { DatasetInput } from './datasets.js';
import type { Metric } from './types.js';

/** One logging operation as stored in the spool (and in the worker's queue). */
export type SpoolOp =
  | { k: 'log'; runId: string; metrics: Metric[]; params: [string, string][]; tags: [string, string][] }
  | { k: 'end'; runId: string; status: string; endTime: number }
  /** `sha`: the file's version (size, mtime, inode) when the worker took the upload (artifacts.ts fingerprintSync). */
  | { k: 'art'; runId: string; root: string; local: string; path: string; dir: boolean; sha?: string }
  /** Dataset inputs of the run (`mlflow.log_input`; datasets.ts), counted as tags in the reports. */
  | { k: 'inp'; runId: string; datasets: DatasetInput[] };

export interface PendingCounts {
  metrics: number;
  params: number;
  tags: number;
  artifacts: number;
  runEnds: number;
}

export const emptyCounts = (): PendingCounts => ({ metrics: 0, params: 0, tags: 0, artifacts: 0, runEnds: 0 });
export function addCounts(a: PendingCounts, b: PendingCounts): PendingCounts {
  return { metrics: a.metrics + b.metrics, params: a.params + b.params, tags: a.tags + b.tags, artifacts: a.artifacts + b.artifacts, runEnds: a.runEnds + b.runEnds };
}
export function countOp(c: PendingCounts, op: SpoolOp, sign = 1): void {
  if (op.k === 'log') { c.metrics += sign * op.metrics.length; c.params += sign * op.params.length; c.tags += sign * op.tags.length; }
  else if (op.k === 'end') c.runEnds += sign;
  else if (op.k === 'inp') c.tags += sign * op.datasets.length;
  else c.artifacts += sign;
}

/**
 * A key for the backend, so that a spool is only delivered to its own store: a readable slug of the URI without
 * credentials and without its query (which may hold `?password=`), and a hash of the URI with its user info
 * and secret query values removed. The key names a folder that messages print, so no secret may reach it.
 */
export function storeKey(trackingUri: string): string {
  const clean = withoutSecrets(trackingUri);
  const slug = clean.replace(/[?#].*$/, '').replace(/[^A-Za-z0-9]+/g, '_').slice(0, 40);
  return `${slug}-${createHash('sha256').update(clean).digest('hex').slice(0, 12)}`;
}

/** The URI without user info and with the values of secret-named query parameters removed. */
function withoutSecrets(uri: string): string {
  const noUser = uri.replace(/\/\/[^/@]*@/, '//');
  const q = noUser.indexOf('?');
  if (q < 0) return noUser;
  const query = noUser.slice(q + 1).split('&').map((kv) => {
    const name = decodeURIComponentSafe(kv.split('=')[0]!);
    return isSecretKey(name) || /^(sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token)$/i.test(name) ? `${kv.split('=')[0]}=` : kv;
  });
  return `${noUser.slice(0, q)}?${query.join('&')}`;
}

function decodeURIComponentSafe(s: string): string {
  try { return decodeURIComponent(s); } catch { return s; }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Who owns a spool directory (its owner.json): the process, on which host, since which boot. */
export interface SpoolOwner {
  pid: number;
  since: number;
  /** os.hostname() of the owner (absent in spools of older versions). */
  host?: string;
  /** Linux's /proc/sys/kernel/random/boot_id when the owner ran (null where there is none). */
  boot?: string | null;
  /** The owner process's start time (field 22 of /proc/<pid>/stat, clock ticks since boot), to tell a reused pid. */
  start?: string | null;
  released?: boolean;
}

function readTrimmed(path: string): string | null {
  try { return readFileSync(path, 'utf8').trim() || null; } catch { return null; }
}

/** This boot's id (Linux); null elsewhere. */
export const bootId = (): string | null => readTrimmed('/proc/sys/kernel/random/boot_id');

/** A process's start time in clock ticks since boot (Linux /proc/<pid>/stat field 22); null where unknown. */
export function processStart(pid: number): string | null {
  const stat = readTrimmed(`/proc/${pid}/stat`);
  if (!stat) return null;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19] ?? null; // fields from #3 (state) on: #22 is index 19
}

/** The owner record of this process. */
export function currentOwner(released = false): SpoolOwner {
  return { pid: process.pid, since: Date.now(), host: hostname(), boot: bootId(), start: processStart(process.pid), ...(released ? { released } : {}) };
}

/**
 * Whether a spool may be adopted: its owner closed it (released), or is provably gone — on this host, from an
 * earlier boot, or its pid is not alive (or alive with another start time: reused). A spool of another host is
 * never adopted while not released: its owner may be alive (shared storage, containers with the same pids).
 */
export function ownerVerdict(owner: SpoolOwner | null): 'adopt' | 'alive' | 'foreign' {
  if (!owner || !owner.pid) return 'adopt';
  if (owner.released === true) return 'adopt';
  if (owner.host !== undefined && owner.host !== hostname()) return 'foreign';
  const boot = bootId();
  if (owner.boot && boot && owner.boot !== boot) return 'adopt';
  if (!pidAlive(owner.pid)) return 'adopt';
  if (owner.start && owner.boot && owner.boot === boot) {
    const now = processStart(owner.pid);
    if (now !== null && now !== owner.start) return 'adopt';
  }
  return 'alive';
}

interface Segment { file: string; n: number }

/** A write-ahead journal file of this spool: its number, the highest sequence number in it, its size. */
interface Journal { n: number; maxSeq: number; bytes: number }

const JOURNAL_FILE_BYTES = 4 * 1024 * 1024;
const journalName = (n: number) => `wal-${String(n).padStart(8, '0')}.jsonl`;
const serialize = (op: SpoolOp) => JSON.stringify(op, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? `__num:${v}` : v));

/** One spool line back to its operation (±Infinity and NaN are stored as '__num:…'); null when it is not one. */
function parseOp(line: string): SpoolOp | null {
  try {
    const op = JSON.parse(line, (_k, v) => (typeof v === 'string' && v.startsWith('__num:') ? Number(v.slice(6)) : v)) as SpoolOp;
    if (!op || typeof op !== 'object' || typeof op.runId !== 'string') return null;
    if (op.k === 'log') return Array.isArray(op.metrics) && Array.isArray(op.params) && Array.isArray(op.tags) ? op : null;
    if (op.k === 'end') return typeof op.status === 'string' ? op : null;
    if (op.k === 'art') return typeof op.local === 'string' && typeof op.root === 'string' ? op : null;
    if (op.k === 'inp') return Array.isArray(op.datasets) ? op : null;
    return null;
  } catch {
    return null;
  }
}

export class Spool {
  readonly root: string;
  readonly dir: string;
  /** This spool's name: stamped on the lines it writes, to tell them from adopted ones. */
  readonly id: string;
  private readonly maxBytes: number;
  private seq = 0;
  private writeSeg: number | null = null;
  private sealed = new Set<number>();
  private bytes = 0;
  /** Operations dropped because the spool was full. */
  readonly dropped = emptyCounts();
  private created = false;
  /** Lines of the spool that could not be read back (torn by a crash or a full disk), skipped. */
  corruptLines = 0;
  private readonly foreignReported = new Set<string>();
  /** Write-ahead journal files, oldest first, and the sequence number up to which everything is stored or spooled. */
  private journals: Journal[] = [];
  private journalSeq = 0;
  private coveredSeq = 0;
  /** Called once per spool file with corrupt lines (`lost`: data was lost), once per foreign spool left alone. */
  private readonly warn: (message: string, lost: boolean) => void;

  constructor(spoolDir: string, trackingUri: string, maxBytes: number, warn: (message: string, lost: boolean) => void = () => {}) {
    this.warn = warn;
    this.root = join(resolve(spoolDir), storeKey(trackingUri));
    this.id = `${process.pid}-${randomUUID().slice(0, 8)}`;
    this.dir = join(this.root, this.id);
    this.maxBytes = maxBytes;
  }

  private ensureDir(): void {
    if (this.created) return;
    mkdirSync(this.dir, { recursive: true });
    writeFileSync(join(this.dir, 'owner.json'), JSON.stringify(currentOwner()));
    this.created = true;
  }

  /** Moves the spools of dead processes (and empty leftovers) under this one, oldest first. */
  adoptOrphans(): number {
    if (!existsSync(this.root)) return 0;
    let adopted = 0;
    const others = readdirSync(this.root).filter((d) => join(this.root, d) !== this.dir).sort();
    for (const d of others) {
      const p = join(this.root, d);
      let owner: SpoolOwner | null = null;
      try { owner = JSON.parse(readFileSync(join(p, 'owner.json'), 'utf8')) as SpoolOwner; } catch { owner = null; }
      // Another live tracker's spool is left alone; a closed tracker's or a provably dead process's is adopted.
      const verdict = ownerVerdict(owner);
      if (verdict === 'alive') continue;
      if (verdict === 'foreign') {
        if (!this.foreignReported.has(d)) {
          this.foreignReported.add(d);
          this.warn(`spool ${p} belongs to a tracker on host '${owner!.host}' (pid ${owner!.pid}) that may be alive: left alone — it is delivered by a tracker on that host, or after you delete its owner.json`, false);
        }
        continue;
      }
      const segs = this.segmentsOf(p);
      if (!segs.length && !this.journalsOf(p).length) { rmSync(p, { recursive: true, force: true }); continue; }
      this.ensureDir();
      // Claim atomically: rename the orphan into a unique name; whoever renames first owns it.
      const claimed = join(this.root, `${d}.claimed-${process.pid}-${randomUUID().slice(0, 6)}`);
      try { renameSync(p, claimed); } catch { continue; }
      for (const s of this.segmentsOf(claimed)) {
        const n = ++this.seq;
        const dest = join(this.dir, `seg-${String(n).padStart(8, '0')}.jsonl`);
        renameSync(s.file, dest);
        const pos = `${s.file.slice(0, -'.jsonl'.length)}.pos`;
        if (existsSync(pos)) renameSync(pos, `${dest.slice(0, -'.jsonl'.length)}.pos`);
        this.sealed.add(n);
        this.bytes += statSync(dest).size;
        adopted++;
      }
      // What its tracker held in memory (written ahead, not yet stored nor spooled) comes after its segments.
      const held = this.journalOps(claimed);
      if (held.length) {
        const n = ++this.seq;
        const dest = join(this.dir, `seg-${String(n).padStart(8, '0')}.jsonl`);
        writeFileSync(dest, held.join('\n') + '\n');
        this.sealed.add(n);
        this.bytes += statSync(dest).size;
        adopted++;
      }
      rmSync(claimed, { recursive: true, force: true });
    }
    return adopted;
  }

  private segmentsOf(dir: string): Segment[] {
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .map((f) => /^seg-(\d+)\.jsonl$/.exec(f))
      .filter((m): m is RegExpExecArray => !!m)
      .map((m) => ({ file: join(dir, m[0]), n: Number(m[1]) }))
      .sort((a, b) => a.n - b.n);
  }

  private journalsOf(dir: string): string[] {
    if (!existsSync(dir)) return [];
    return readdirSync(dir).filter((f) => /^wal-\d+\.jsonl$/.test(f)).sort().map((f) => join(dir, f));
  }

  /**
   * The lines of an adopted folder's journals that were neither stored nor spooled by their tracker (sequence
   * number beyond its wal.pos), in order. Unreadable (torn) lines are skipped and reported like a segment's.
   */
  private journalOps(dir: string): string[] {
    let mark = 0;
    try { mark = Number(readFileSync(join(dir, 'wal.pos'), 'utf8')) || 0; } catch { mark = 0; }
    const out: string[] = [];
    for (const file of this.journalsOf(dir)) {
      let bad = 0;
      for (const l of readFileSync(file, 'utf8').split('\n')) {
        if (!l) continue;
        const op = parseOp(l) as (SpoolOp & { q?: unknown }) | null;
        if (!op) { bad++; continue; }
        if (typeof op.q === 'number' && op.q <= mark) continue;
        out.push(l);
      }
      if (bad) {
        this.corruptLines += bad;
        this.warn(`spool journal ${file}: ${bad} unreadable line(s) (torn by a crash or a full disk) skipped; the rest is delivered`, true);
      }
    }
    return out;
  }

  /** True when neither segments nor write-ahead journals are left. */
  get isEmpty(): boolean {
    return this.segmentsOf(this.dir).length === 0 && this.journals.length === 0;
  }

  /**
   * Writes operations ahead of their delivery (each tagged with its sequence number \`q\`, in order). Throws when
   * the disk refuses (the caller reports it); a torn line is skipped on adoption.
   */
  writeAhead(ops: Array<SpoolOp & { q: number; o: string }>): void {
    if (!ops.length) return;
    this.ensureDir();
    let j = this.journals[this.journals.length - 1];
    if (!j || j.bytes > JOURNAL_FILE_BYTES) {
      j = { n: ++this.journalSeq, maxSeq: 0, bytes: 0 };
      this.journals.push(j);
    }
    const text = ops.map(serialize).join('\n') + '\n';
    try {
      appendFileSync(join(this.dir, journalName(j.n)), text);
    } catch (e) {
      j.bytes = Infinity; // never append after a possibly torn line
      j.maxSeq = Math.max(j.maxSeq, ops[ops.length - 1]!.q);
      throw e;
    }
    j.bytes += Buffer.byteLength(text);
    j.maxSeq = Math.max(j.maxSeq, ops[ops.length - 1]!.q);
  }

  /**
   * Everything up to sequence number \`seq\` is stored or in the spool: journal files holding nothing newer are
   * deleted, and wal.pos records \`seq\` for the others.
   */
  covered(seq: number): void {
    if (seq <= this.coveredSeq) return;
    this.coveredSeq = seq;
    if (!this.journals.length) return;
    while (this.journals.length && this.journals[0]!.maxSeq <= seq) {
      rmSync(join(this.dir, journalName(this.journals.shift()!.n)), { force: true });
    }
    // A failed write only means that a later tracker delivers some operations twice: delivery is idempotent.
    try {
      if (this.journals.length) writeFileSync(join(this.dir, 'wal.pos'), String(seq));
      else rmSync(join(this.dir, 'wal.pos'), { force: true });
    } catch { /* redelivered */ }
  }

  get sizeBytes(): number {
    return this.bytes;
  }

  /** Appends operations in order. Metric points beyond the bound are dropped (and counted). */
  append(ops: SpoolOp[]): void {
    if (!ops.length) return;
    this.ensureDir();
    if (this.writeSeg === null || this.sealed.has(this.writeSeg)) this.writeSeg = ++this.seq;
    const lines: string[] = [];
    let size = 0;
    let dropped = 0;
    for (const op of ops) {
      let line = serialize(op);
      if (this.bytes + size + line.length + 1 > this.maxBytes) {
        if (op.k === 'log' && op.metrics.length) {
          dropped += op.metrics.length;
          if (!op.params.length && !op.tags.length) continue;
          line = JSON.stringify({ ...op, metrics: [] });
        }
      }
      lines.push(line);
      size += line.length + 1;
    }
    if (!lines.length) { this.dropped.metrics += dropped; return; }
    const file = join(this.dir, `seg-${String(this.writeSeg).padStart(8, '0')}.jsonl`);
    try {
      appendFileSync(file, lines.join('\n') + '\n');
    } catch (e) {
      // A full disk (ENOSPC) or an I/O error may leave a torn last line: never append after it (reading skips
      // it), and let the caller keep the operations in memory.
      this.sealed.add(this.writeSeg);
      throw e;
    }
    this.dropped.metrics += dropped;
    this.bytes += size;
    // keep segments small enough to read whole
    if (statSync(file).size > 8 * 1024 * 1024) this.sealed.add(this.writeSeg);
  }

  /**
   * The oldest segment's undelivered operations; the segment is sealed (no more appends) so the caller can
   * deliver it and then `advance()`/`finish()`.
   */
  next(): { n: number; ops: SpoolOp[]; start: number } | null {
    const seg = this.segmentsOf(this.dir)[0];
    if (!seg) return null;
    this.sealed.add(seg.n);
    const ops = this.readSegment(seg.file);
    let start = 0;
    try { start = Number(readFileSync(seg.file.replace(/\.jsonl$/, '.pos'), 'utf8')) || 0; } catch { start = 0; }
    return { n: seg.n, ops, start };
  }

  /**
   * The operations of one segment file. A line that does not parse (torn by SIGKILL, power loss or a full disk
   * mid-append) is skipped, counted and reported once, and the file is rewritten without it so that the
   * delivered-lines count (`.pos`) keeps meaning the same lines.
   */
  private readSegment(file: string): SpoolOp[] {
    const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0);
    const ops: SpoolOp[] = [];
    const good: string[] = [];
    for (const l of lines) {
      const op = parseOp(l);
      if (op) { ops.push(op); good.push(l); }
    }
    const bad = lines.length - good.length;
    if (bad > 0) {
      this.corruptLines += bad;
      this.warn(`spool file ${file}: ${bad} unreadable line(s) (torn by a crash or a full disk) skipped; the rest is delivered`, true);
      try {
        const tmpFile = `${file}.rewrite`;
        writeFileSync(tmpFile, good.length ? good.join('\n') + '\n' : '');
        renameSync(tmpFile, file);
      } catch { /* read-only or full: skipped again (and reported again) next time */ }
    }
    return ops;
  }

  /** Records that the first `delivered` operations of segment `n` are stored. */
  advance(n: number, delivered: number): void {
    // A failed write (full disk) only means those lines are delivered again: delivery is idempotent.
    try { writeFileSync(join(this.dir, `seg-${String(n).padStart(8, '0')}.pos`), String(delivered)); } catch { /* redelivered */ }
  }

  /** Removes a fully delivered segment. */
  finish(n: number): void {
    const base = join(this.dir, `seg-${String(n).padStart(8, '0')}`);
    try { this.bytes -= statSync(`${base}.jsonl`).size; } catch { /* gone */ }
    rmSync(`${base}.jsonl`, { force: true });
    rmSync(`${base}.pos`, { force: true });
    if (this.bytes < 0 || this.isEmpty) this.bytes = Math.max(0, this.isEmpty ? 0 : this.bytes);
  }

  /** Counts what the spool still holds. */
  pending(): PendingCounts {
    const c = emptyCounts();
    for (const seg of this.segmentsOf(this.dir)) {
      const lines = readFileSync(seg.file, 'utf8').split('\n').filter(Boolean);
      let start = 0;
      try { start = Number(readFileSync(seg.file.replace(/\.jsonl$/, '.pos'), 'utf8')) || 0; } catch { start = 0; }
      for (const l of lines.slice(start)) {
        const op = parseOp(l);
        if (op) countOp(c, op);
      }
    }
    return c;
  }

  /** Marks this spool as abandoned by its (closing) tracker, so that the next tracker adopts it. */
  release(): void {
    if (!this.created) return;
    if (this.isEmpty) { this.cleanupIfEmpty(); return; }
    try {
      writeFileSync(join(this.dir, 'owner.json'), JSON.stringify(currentOwner(true)));
    } catch { /* full disk: adopted once this process is gone */ }
  }

  /** Removes this tracker's directory when nothing is left in it. */
  cleanupIfEmpty(): void {
    if (this.created && this.isEmpty) {
      rmSync(this.dir, { recursive: true, force: true });
      this.created = false;
    }
  }
}
