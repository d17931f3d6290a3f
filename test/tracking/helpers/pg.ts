// Reading a PostgreSQL store's tables directly (what the tracker wrote, as MLflow's schema holds it).
import pg from 'pg';

export async function pgRows<T = any>(uri: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: uri });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
