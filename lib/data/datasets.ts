// The data a run trained on, as MLflow dataset inputs (`mlflow.log_input`): one dataset per split
// (`<name>-train`, `-val`, `-test`, with `mlflow.data.context` training / validation / testing), shaped as
// Python MLflow's NumpyDataset writes them (checked against the pinned mlflow 3.17: mlflow/data/numpy_dataset.py,
// schema.py, digest_utils.py):
//   digest   8 hex characters of an md5 (MLflow's length). Synthetic data: of the generator options (seed,
//            samples, preset, physics) and the split; a directory: of its manifest.json and every sample file's
//            name and size, and the split; tensors: of the first 10 000 values and the shapes, and the split.
//            The same options (or the same files) give the same digest, so the experiment's datasets row is reused.
//   source   synthetic / tensors: `code` {"tags": {…}}; a directory: `local` {"uri": "<absolute path>"}.
//   schema   {"mlflow_tensorspec": {"features": "[{…tensor-spec…}]", "targets": "[…]"}} (batch dimension -1).
//   profile  NumpyDataset's features_/targets_ shape, size, nbytes, then num_samples, split and target_kind.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { DATASET_CONTEXT_TAG, pythonJson, type DatasetInput } from '../tracking/datasets.js';

export type SplitName = 'train' | 'val' | 'test';
/** MLflow's context names for the splits. */
export const SPLIT_CONTEXT: Readonly<Record<SplitName, string>> = { train: 'training', val: 'validation', test: 'testing' };

export type TensorDtype = 'float32' | 'int32' | 'int64';
const DTYPE_BYTES: Record<TensorDtype, number> = { float32: 4, int32: 4, int64: 8 };

/** What identifies a data set and how its samples look; the splits are described per split below. */
export interface DatasetDescription {
  /** Dataset name before the split suffix (`heimdall-synthetic`). */
  name: string;
  sourceType: string;
  source: Record<string, unknown>;
  /** Everything that makes the data what it is (hashed into the digest, with the split). */
  identity: unknown;
  /** One sample's input shape, and the target's (empty for a class index). */
  inputShape: readonly number[];
  targetShape: readonly number[];
  inputDtype: TensorDtype;
  targetDtype: TensorDtype;
  /** `position [lat, lon] (normalised)`, `class index`, `regression (k values)`. */
  targetKind: string;
}

export interface SplitDescription {
  split: SplitName;
  size: number;
  /** What chose the split's samples (the reference split's seed), hashed into the digest. */
  seed: number;
}

/** md5 of the identity and split, 8 hex characters as MLflow's own digests. */
export function datasetDigest(identity: unknown, split: SplitDescription): string {
  return createHash('md5').update(pythonJson([identity, split.split, split.seed, split.size])).digest('hex').slice(0, 8);
}

const tensorSpec = (dtype: TensorDtype, shape: readonly number[]) => pythonJson([{ type: 'tensor', 'tensor-spec': { dtype, shape: [-1, ...shape] } }]);
const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** The dataset inputs of a data set's splits (those present, in train, val, test order). */
export function datasetInputs(d: DatasetDescription, splits: readonly SplitDescription[]): DatasetInput[] {
  const schema = pythonJson({ mlflow_tensorspec: { features: tensorSpec(d.inputDtype, d.inputShape), targets: tensorSpec(d.targetDtype, d.targetShape) } });
  return splits.map((s) => {
    const features = [s.size, ...d.inputShape];
    const targets = [s.size, ...d.targetShape];
    const profile = pythonJson({
      features_shape: features, features_size: prod(features), features_nbytes: prod(features) * DTYPE_BYTES[d.inputDtype],
      targets_shape: targets, targets_size: prod(targets), targets_nbytes: prod(targets) * DTYPE_BYTES[d.targetDtype],
      num_samples: s.size, split: s.split, target_kind: d.targetKind,
    });
    return {
      dataset: { name: `${d.name}-${s.split}`, digest: datasetDigest(d.identity, s), sourceType: d.sourceType, source: pythonJson(d.source), schema, profile },
      tags: [{ key: DATASET_CONTEXT_TAG, value: SPLIT_CONTEXT[s.split] }],
    };
  });
}

/** What the data directory holds, for its digest: manifest.json's bytes and each sample file's name and size. */
export function directoryIdentity(dir: string): { manifest: string | null; files: [string, number][] } {
  const abs = resolve(dir);
  let manifest: string | null = null;
  try {
    manifest = createHash('md5').update(readFileSync(join(abs, 'manifest.json'))).digest('hex');
  } catch { /* none: the defaults apply */ }
  const files: [string, number][] = readdirSync(abs)
    .filter((n) => n.endsWith('_iq.npy') || n.endsWith('_label.npy'))
    .sort()
    .map((n) => [n, statSync(join(abs, n)).size]);
  return { manifest, files };
}

/** The dataset name of a directory (`heimdall-<folder name>`), within MLflow's characters. */
export function directoryDatasetName(dir: string): string {
  return `heimdall-${basename(resolve(dir)).replace(/[^A-Za-z0-9_.-]+/g, '_').slice(0, 200) || 'data'}`;
}

/** The identity of in-memory tensors: their shapes and the md5 of their first 10 000 values (MLflow's MAX_ROWS). */
export function tensorIdentity(inputs: Float32Array, shape: readonly number[], targets: Float32Array | Int32Array, targetShape: readonly number[]): unknown {
  const head = (a: Float32Array | Int32Array) => createHash('md5').update(new Uint8Array(a.buffer, a.byteOffset, Math.min(a.length, 10000) * a.BYTES_PER_ELEMENT)).digest('hex');
  return { inputs: head(inputs), shape: [...shape], targets: head(targets), target_shape: [...targetShape], target_dtype: targets instanceof Int32Array ? 'int32' : 'float32' };
}
