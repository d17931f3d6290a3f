// predict() on IQ computes the features as the training data path does — also for a data directory whose
// manifest sets its own dB constants — checked against libtorch on the directory data set itself.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConvNeXt, exportOnnx, HeimdallDataModule, loadModel, native, type NativeEngine } from '../../lib/index.js';
import { tempDir } from '../helpers/tmp.js';
import { maxAbsDiff } from './helpers.js';

describe('features of IQ at inference = features of the training data path', () => {
  for (const custom of [false, true]) {
    it(custom ? 'with a manifest that sets ref_db / scale_db / floor_db' : 'with the default feature constants', async () => {
      const dir = tempDir('heimdall-features-');
      const data = join(dir, 'data');
      await HeimdallDataModule.writeSynthetic(data, 5, { seed: 11 });
      if (custom) {
        const m = JSON.parse(readFileSync(join(data, 'manifest.json'), 'utf8')) as Record<string, unknown>;
        writeFileSync(join(data, 'manifest.json'), JSON.stringify({ ...m, features: { ref_db: -70, scale_db: 25, floor_db: -120 } }));
      }
      const ds = await HeimdallDataModule.fromDirectory(data);
      expect(ds.info.features.refDb).toBe(custom ? -70 : -80);
      const model = ConvNeXt.localization('convnext_atto', { inChans: 7, seed: 5 });
      const weights = join(dir, 'w.safetensors');
      await model.saveWeights(weights);
      const onnx = join(dir, 'model.onnx');
      await exportOnnx(weights, onnx, { inputShape: [7, 128, 32], metadata: { 'heimdall.data': ds.info.metadataJson }, validate: false });

      const m = await loadModel(onnx);
      try {
        expect(m.metadata.features).toMatchObject({ refDb: custom ? -70 : -80, scaleDb: custom ? 25 : 20, floorDb: custom ? -120 : -140 });
        const ours = await m.predictDirectory(data);
        const engine = new (native().Engine)(model.native, { device: 'cpu' }) as NativeEngine;
        const torch = await engine.predict(ds.dataset, { batchSize: 5 });
        expect(maxAbsDiff(ours.prediction.outputs.positions!.data, torch.positions!.data)).toBeLessThan(1e-4);
        expect(maxAbsDiff(ours.prediction.outputs.uncertainties!.data, torch.uncertainties!.data)).toBeLessThan(1e-4);
        // degrees: the data set's own normalisation
        const deg = ds.toDegrees(torch.positions!.data);
        expect(Math.abs(ours.samples[2]!.lat - deg[4]!)).toBeLessThan(1e-3);
        expect(Math.abs(ours.samples[2]!.lon - deg[5]!)).toBeLessThan(1e-3);
      } finally {
        await m.close();
      }
    });
  }
});
