// Dataset inputs over MLflow's REST API: POST /api/2.0/mlflow/runs/log-inputs with the LogInputs message of
// the pinned MLflow's service.proto (run_id, datasets: [{ tags: [{key, value}], dataset: {name, digest,
// source_type, source, schema, profile} }]), as rest_store.py `log_inputs` sends it.
import { dedupeDatasetInputs, type DatasetInput } from '../datasets.js';

/** The LogInputs request body (schema/profile omitted when null, as protobuf JSON does). */
export function logInputsBody(runId: string, inputs: readonly DatasetInput[]): Record<string, unknown> {
  return {
    run_id: runId,
    datasets: dedupeDatasetInputs(inputs).map(({ dataset: d, tags }) => ({
      tags: tags.map((t) => ({ key: t.key, value: t.value })),
      dataset: {
        name: d.name,
        digest: d.digest,
        source_type: d.sourceType,
        source: d.source,
        ...(d.schema !== null ? { schema: d.schema } : {}),
        ...(d.profile !== null ? { profile: d.profile } : {}),
      },
    })),
  };
}
