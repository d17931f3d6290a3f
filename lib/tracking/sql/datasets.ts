// Dataset inputs in MLflow's SQL schema, row for row as sqlalchemy_store.py `log_inputs` writes them:
// a `datasets` row keyed by (experiment_id, name, digest), reused when it exists; an `inputs` row
// (DATASET → RUN), also reused; and its `input_tags`, written with a new input only. UUIDs are 32 hex
// characters (uuid4().hex). Databases without the tables (older than MLflow 2.4) skip them with one warning.
import { randomUUID } from 'node:crypto';
import { DATASET_CONTEXT_TAG, dedupeDatasetInputs, type DatasetInput } from '../datasets.js';
import type { RunDataset } from '../types.js';
import { invalidParameter } from '../errors.js';
import type { SqlDriver, SqlExecutor } from './driver.js';
import { notFound } from '../errors.js';

const hexUuid = () => randomUUID().replace(/-/g, '');

/** Whether the database has MLflow's dataset tables (checked once per store). */
export async function hasDatasetTables(db: SqlDriver): Promise<boolean> {
  const names = db.dialect === 'sqlite'
    ? await db.query<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('datasets', 'inputs', 'input_tags')")
    : await db.query<{ name: string }>("SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name IN ('datasets', 'inputs', 'input_tags')");
  return names.length === 3;
}

/** Logs dataset inputs of a run (idempotent: a dataset and its input to this run are written once). */
export async function logDatasetInputs(db: SqlDriver, runId: string, inputs: readonly DatasetInput[]): Promise<void> {
  const unique = dedupeDatasetInputs(inputs);
  if (!unique.length) return;
  await db.transaction(async (tx) => {
    const runs = await tx.query<{ experiment_id: number; lifecycle_stage: string }>('SELECT experiment_id, lifecycle_stage FROM runs WHERE run_uuid = ?', [runId]);
    const run = runs[0];
    if (!run) throw notFound(`Run with id=${runId} not found`);
    if (run.lifecycle_stage !== 'active') throw invalidParameter(`The run ${runId} must be in the 'active' state. Current state is ${run.lifecycle_stage}.`);
    const experimentId = Number(run.experiment_id);
    for (const input of unique) {
      const datasetUuid = await datasetUuidFor(tx, db.dialect, experimentId, input);
      const existing = await tx.query<{ input_uuid: string }>(
        "SELECT input_uuid FROM inputs WHERE source_type = 'DATASET' AND source_id = ? AND destination_type = 'RUN' AND destination_id = ?",
        [datasetUuid, runId],
      );
      if (existing.length) continue;
      const inputUuid = hexUuid();
      // No `step`: MLflow 3 added it (server default 0, as MLflow leaves it for datasets); 2.x databases lack it.
      await tx.run(
        "INSERT INTO inputs (input_uuid, source_type, source_id, destination_type, destination_id) VALUES (?, 'DATASET', ?, 'RUN', ?)",
        [inputUuid, datasetUuid, runId],
      );
      const seen = new Set<string>();
      for (const t of input.tags) {
        if (seen.has(t.key)) continue;
        seen.add(t.key);
        await tx.run('INSERT INTO input_tags (input_uuid, name, value) VALUES (?, ?, ?)', [inputUuid, t.key, t.value]);
      }
    }
  });
}

/** The run's dataset inputs with their `mlflow.data.context` tag (sqlalchemy_store's _get_run_inputs). */
export async function runDatasets(db: SqlDriver, runId: string): Promise<RunDataset[]> {
  const rows = await db.query<{ name: string; digest: string; context: string | null }>(
    `SELECT d.name AS name, d.digest AS digest, t.value AS context FROM inputs i
       JOIN datasets d ON d.dataset_uuid = i.source_id
       LEFT JOIN input_tags t ON t.input_uuid = i.input_uuid AND t.name = ?
     WHERE i.source_type = 'DATASET' AND i.destination_type = 'RUN' AND i.destination_id = ?
     ORDER BY d.name, d.digest`,
    [DATASET_CONTEXT_TAG, runId],
  );
  return rows.map((r) => ({ name: String(r.name), digest: String(r.digest), context: r.context ?? null }));
}

/** The uuid of the experiment's dataset with this name and digest: the existing row's, else a new row's. */
async function datasetUuidFor(tx: SqlExecutor, dialect: SqlDriver['dialect'], experimentId: number, input: DatasetInput): Promise<string> {
  const d = input.dataset;
  const select = () => tx.query<{ dataset_uuid: string }>('SELECT dataset_uuid FROM datasets WHERE experiment_id = ? AND name = ? AND digest = ?', [experimentId, d.name, d.digest]);
  const found = await select();
  if (found.length) return found[0]!.dataset_uuid;
  // Another writer may insert the same dataset meanwhile (PostgreSQL): keep theirs, as the primary key says.
  const conflict = dialect === 'postgresql' ? ' ON CONFLICT (experiment_id, name, digest) DO NOTHING' : '';
  const verb = dialect === 'sqlite' ? 'INSERT OR IGNORE' : 'INSERT';
  await tx.run(
    `${verb} INTO datasets (dataset_uuid, experiment_id, name, digest, dataset_source_type, dataset_source, dataset_schema, dataset_profile) VALUES (?, ?, ?, ?, ?, ?, ?, ?)${conflict}`,
    [hexUuid(), experimentId, d.name, d.digest, d.sourceType, d.source, d.schema, d.profile],
  );
  return (await select())[0]!.dataset_uuid;
}
