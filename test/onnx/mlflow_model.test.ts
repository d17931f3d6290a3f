// The MLflow model directory written around an exported file (lib/onnx/mlflow_model.ts) loads with Python MLflow's
// own loaders, mlflow.onnx.load_model and mlflow.pyfunc.load_model, and pyfunc's predictions equal libtorch's.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { native } from '../../lib/native.js';
import { exportOnnx } from '../../lib/onnx/export.js';
import { writeMlflowOnnxModel } from '../../lib/onnx/mlflow_model.js';
import { MAX_ABS, PYTHON, runJson, tempDir } from './helpers.js';

const LOAD = `
import json, sys
import numpy as np
import mlflow.onnx, mlflow.pyfunc
from mlflow.models import Model
d, x_path, shape = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
proto = mlflow.onnx.load_model(d)
info = Model.load(d)
model = mlflow.pyfunc.load_model(d)
x = np.fromfile(x_path, dtype=np.float32).reshape(shape)
name = info.signature.inputs.input_names()[0]
out = model.predict({name: x})
print(json.dumps({
  'graph_inputs': [i.name for i in proto.graph.input],
  'flavors': sorted(info.flavors),
  'signature_inputs': info.signature.inputs.to_dict(),
  'signature_outputs': info.signature.outputs.to_dict(),
  'metadata': info.metadata,
  'model_id': info.model_id, 'model_uuid': info.model_uuid, 'artifact_path': info.artifact_path, 'run_id': info.run_id,
  'outputs': {k: np.asarray(v).astype(float).ravel().tolist() for k, v in out.items()},
}))
`;

let addon: any;
beforeAll(() => {
  addon = native();
});

function randomInput(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(i * 12.9898) * 2;
  return a;
}

describe('MLflow onnx flavor', () => {
  for (const external of [false, true]) {
    it(`mlflow.onnx and mlflow.pyfunc load the model directory${external ? ' (external data)' : ''}`, async () => {
      const model = new addon.Model({ variant: 'convnext_atto', head: 'localization', layerScaleInit: 0.5, seed: 5 });
      const dir = tempDir();
      const report = await exportOnnx(model, join(dir, 'model.onnx'), {
        inputShape: [3, 128, 32], validate: false, ...(external ? { externalDataThreshold: 0 } : {}),
      });
      // as a run artifact (MLflow 2.x stores), or as an MLflow 3 logged model (model_id, its own artifact location)
      const modelId = external ? 'm-0123456789abcdef0123456789abcdef' : undefined;
      const location = 'file:///tmp/mlruns/1/models/m-0123456789abcdef0123456789abcdef/artifacts';
      const m = writeMlflowOnnxModel(report, join(dir, 'mlflow-model'),
        { runId: '0123456789abcdef0123456789abcdef', ...(modelId ? { modelId, artifactPath: location } : {}) });
      expect(m.files).toContain('MLmodel');
      if (external) expect(m.files).toContain('model.onnx.data');

      const shape = [3, 3, 128, 32];
      const x = randomInput(shape.reduce((a, b) => a * b));
      const xPath = join(dir, 'x.f32');
      writeFileSync(xPath, Buffer.from(x.buffer));
      const py = await runJson<any>(PYTHON, ['-c', LOAD, m.dir, xPath, JSON.stringify(shape)]);
      expect(py.graph_inputs).toEqual(['mel_spectrogram']);
      expect(py.flavors).toEqual(['onnx', 'python_function']);
      expect(py.signature_inputs).toEqual([{ name: 'mel_spectrogram', type: 'tensor', 'tensor-spec': { dtype: 'float32', shape: [-1, 3, 128, 32] } }]);
      expect(py.signature_outputs.map((o: any) => o.name)).toEqual(['positions', 'uncertainties']);
      expect(py.metadata['heimdall.variant']).toBe('convnext_atto');
      expect(py.metadata['heimdall.onnx_sha256']).toBe(report.sha256);
      expect(py.run_id).toBe('0123456789abcdef0123456789abcdef');
      if (modelId) expect([py.model_id, py.model_uuid, py.artifact_path]).toEqual([modelId, modelId, location]);
      else expect([py.model_id, py.model_uuid, py.artifact_path]).toEqual([null, expect.stringMatching(/^[0-9a-f]{32}$/), 'model']);

      const engine = new addon.Engine(model, { device: 'cpu' });
      const ref = await engine.predict(x, { shape, batchSize: 3 });
      for (const name of ['positions', 'uncertainties']) {
        const expected = ref[name].data as Float32Array;
        const got = py.outputs[name] as number[];
        expect(got.length).toBe(expected.length);
        const maxAbs = Math.max(...got.map((v, i) => Math.abs(v - expected[i])));
        expect(maxAbs, name).toBeLessThanOrEqual(MAX_ABS);
      }
    }, 300_000);
  }
});
