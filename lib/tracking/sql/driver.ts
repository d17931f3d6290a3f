// Two drivers behind one small interface, so that one SQL store serves SQLite and PostgreSQL.
// SQL is written with `?` placeholders; the PostgreSQL driver numbers them.
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';
import type pg from 'pg';

export type Dialect = 'sqlite' | 'postgresql';
export type SqlValue = string | number | boolean | null;
export type Row = Record<string, unknown>;

export interface SqlExecutor {
  query<T extends Row = Row>(sql: string, params?: SqlValue[]): Promise<T[]>;
  run(sql: string, params?: SqlValue[]): Promise<number>;
}

export interface SqlDriver extends SqlExecutor {
  readonly dialect: Dialect;
  /** Runs `fn` in one transaction (serialisable enough for our writes: IMMEDIATE on SQLite). */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

const require = createRequire(import.meta.url);

// ---------------------------------------------------------------------------------------------------------
// SQLite (better-sqlite3, synchronous: fine inside the worker thread)
// ---------------------------------------------------------------------------------------------------------
export class SqliteDriver implements SqlDriver {
  readonly dialect = 'sqlite' as const;
  readonly path: string;
  private db: BetterSqlite3.Database;
  private stmts = new Map<string, BetterSqlite3.Statement>();
  private inTx = false;

  constructor(path: string) {
    this.path = path === ':memory:' ? path : resolve(path);
    if (this.path !== ':memory:') mkdirSync(dirname(this.path), { recursive: true });
    const Database = require('better-sqlite3') as typeof BetterSqlite3;
    this.db = new Database(this.path);
    this.db.pragma('busy_timeout = 10000');
    this.db.pragma('foreign_keys = ON');
  }

  private stmt(sql: string): BetterSqlite3.Statement {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      if (this.stmts.size > 500) this.stmts.clear();
      this.stmts.set(sql, s);
    }
    return s;
  }

  private static bind(params: SqlValue[] | undefined): (string | number | null)[] {
    return (params ?? []).map((p) => (typeof p === 'boolean' ? (p ? 1 : 0) : p));
  }

  async query<T extends Row = Row>(sql: string, params?: SqlValue[]): Promise<T[]> {
    return this.stmt(sql).all(...SqliteDriver.bind(params)) as T[];
  }

  async run(sql: string, params?: SqlValue[]): Promise<number> {
    const s = this.stmt(sql);
    if (!s.reader) return s.run(...SqliteDriver.bind(params)).changes;
    s.all(...SqliteDriver.bind(params));
    return 0;
  }

  /** Executes a script of several statements (DDL). */
  exec(sql: string): void {
    this.db.exec(sql);
  }

  async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    if (this.inTx) return fn(this);
    this.db.exec('BEGIN IMMEDIATE');
    this.inTx = true;
    try {
      const r = await fn(this);
      this.db.exec('COMMIT');
      return r;
    } catch (e) {
      if (this.db.inTransaction) this.db.exec('ROLLBACK');
      throw e;
    } finally {
      this.inTx = false;
    }
  }

  async close(): Promise<void> {
    this.stmts.clear();
    this.db.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// PostgreSQL (pg)
// ---------------------------------------------------------------------------------------------------------
function numberPlaceholders(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

const INT8_OID = 20;
const NUMERIC_OID = 1700;

export class PostgresDriver implements SqlDriver {
  readonly dialect = 'postgresql' as const;
  private pool: pg.Pool;
  private sqlCache = new Map<string, string>();

  constructor(connectionString: string, opts: { max?: number; connectTimeoutMs?: number } = {}) {
    const pgmod = require('pg') as typeof pg;
    const parseInt8 = (v: string) => Number(v);
    this.pool = new pgmod.Pool({
      connectionString,
      max: opts.max ?? 3,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
      idleTimeoutMillis: 30_000,
      types: {
        getTypeParser: ((oid: number, format?: string) =>
          oid === INT8_OID || oid === NUMERIC_OID ? parseInt8 : pgmod.types.getTypeParser(oid, format as 'text')) as typeof pgmod.types.getTypeParser,
      },
    });
    // An idle client losing its connection (server restart) must not crash the worker.
    this.pool.on('error', () => {});
  }

  private text(sql: string): string {
    let t = this.sqlCache.get(sql);
    if (!t) {
      t = numberPlaceholders(sql);
      if (this.sqlCache.size > 500) this.sqlCache.clear();
      this.sqlCache.set(sql, t);
    }
    return t;
  }

  async query<T extends Row = Row>(sql: string, params?: SqlValue[]): Promise<T[]> {
    const r = await this.pool.query(this.text(sql), params as unknown[]);
    return r.rows as T[];
  }

  async run(sql: string, params?: SqlValue[]): Promise<number> {
    const r = await this.pool.query(this.text(sql), params as unknown[]);
    return r.rowCount ?? 0;
  }

  async transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    const tx: SqlExecutor = {
      query: async <R extends Row = Row>(sql: string, params?: SqlValue[]) => (await client.query(this.text(sql), params as unknown[])).rows as R[],
      run: async (sql: string, params?: SqlValue[]) => (await client.query(this.text(sql), params as unknown[])).rowCount ?? 0,
    };
    let broken = false;
    try {
      await client.query('BEGIN');
      const r = await fn(tx);
      await client.query('COMMIT');
      return r;
    } catch (e) {
      try { await client.query('ROLLBACK'); } catch { broken = true; }
      throw e;
    } finally {
      client.release(broken ? true : undefined);
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** Parses `sqlite:///rel.db`, `sqlite:////abs.db` (SQLAlchemy's form) into a file path. */
export function sqlitePathFromUri(uri: string): string {
  const m = /^sqlite:\/\/\/(.*)$/i.exec(uri);
  if (!m || !m[1]) throw new Error(`Invalid SQLite URI '${uri}': use sqlite:///relative.db or sqlite:////absolute.db`);
  const rest = m[1].split('?')[0]!;
  return rest === ':memory:' ? rest : resolve(rest);
}

/** `postgresql+psycopg2://` and `postgres://` → a URI that `pg` accepts. */
export function pgConnectionString(uri: string): string {
  return uri.replace(/^(postgresql\+[a-z0-9]+|postgres):\/\//i, 'postgresql://');
}
