// Figures: the Vega-Lite specs' data, the rendering (SVG marks, PNG and WebP decoded by Pillow), and a tiny
// fit + test whose run, read back with the pinned MLflow client, holds the images in `mlflow.log_image`'s
// layout with the tag the UI reads, and the plain figure artifacts.
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HeimdallDataModule, haversineM } from '../../lib/data/heimdall.js';
import {
  cdfPoints, confusionCounts, confusionMatrixSpec, errorCdfSpec, imageFileStem, localizationMapSpec, predictedVsTrueSpec, renderFigure,
  renderSvg, trainingCurvesSpec, type VegaLiteSpec,
} from '../../lib/figures/index.js';
import { ConvNeXt } from '../../lib/model.js';
import { FigureLogger, MLflowLogger, ModelCheckpoint, TensorDataModule, Trainer } from '../../lib/trainer/index.js';
import { blobs } from '../native/fixtures.js';
import { python } from '../helpers/python.js';
import { tempDir } from '../helpers/tmp.js';

const base = { device: 'cpu', threads: 2, enableProgressBar: false, enableModelSummary: false, handleSignals: false, optimizer: { name: 'adamw' as const, lr: 2e-3, weightDecay: 1e-5 } };

type Row = Record<string, unknown>;
/** The inline data set named `name` anywhere in a spec (top level, layers, concatenations). */
function dataNamed(spec: unknown, name: string): Row[] {
  const found: Row[][] = [];
  const walk = (o: unknown) => {
    if (!o || typeof o !== 'object') return;
    const d = (o as { data?: { name?: string; values?: Row[] } }).data;
    if (d?.name === name && d.values) found.push(d.values);
    for (const v of Object.values(o)) walk(v);
  };
  walk(spec);
  expect(found.length, `data set ${name}`).toBe(1);
  return found[0]!;
}

/** Decodes images with Pillow: format, size, and the pixel standard deviation (0 for a blank image). */
async function decode(paths: string[]): Promise<Array<{ format: string; size: [number, number]; std: number }>> {
  return JSON.parse(await python(`
import sys, json
from PIL import Image, ImageStat
out = []
for p in sys.argv[1:]:
    im = Image.open(p); im.load()
    st = ImageStat.Stat(im.convert('L'))
    out.append({'format': im.format, 'size': list(im.size), 'std': st.stddev[0]})
print(json.dumps(out))
`, paths));
}

describe('figure specs', () => {
  it('the localization map holds every transmitter, its error line in km, its 1σ ellipse and the receivers', () => {
    const truth: Array<[number, number]> = [[45, 7.5], [44.6, 8.9]];
    const predicted: Array<[number, number]> = [[45.1, 7.6], [44.5, 8.7]];
    const spec = localizationMapSpec({ truth, predicted, sigma: [[0.05, 0.1], [NaN, NaN]], receivers: [{ name: 'Torino', lat: 45.044, lon: 7.672 }] });
    expect(dataNamed(spec, 'positions')).toEqual([
      { id: 0, kind: 'true position', lat: 45, lon: 7.5 }, { id: 0, kind: 'predicted', lat: 45.1, lon: 7.6 },
      { id: 1, kind: 'true position', lat: 44.6, lon: 8.9 }, { id: 1, kind: 'predicted', lat: 44.5, lon: 8.7 },
    ]);
    const errors = dataNamed(spec, 'errors');
    expect(errors.map((e) => e.error_km)).toEqual(truth.map(([a, b], i) => Math.round(haversineM(a, b, ...predicted[i]!) / 10) / 100));
    expect(errors[0]).toMatchObject({ lat: 45, lon: 7.5, lat2: 45.1, lon2: 7.6 });
    const ellipses = dataNamed(spec, 'ellipses');
    expect(ellipses.every((p) => p.id === 0)).toBe(true); // no σ → no ellipse
    expect(ellipses.length).toBe(37);
    const lats = ellipses.map((p) => p.lat as number);
    expect(Math.max(...lats)).toBeCloseTo(45.15, 9);
    expect(Math.min(...ellipses.map((p) => p.lon as number))).toBeCloseTo(7.5, 9);
    expect(dataNamed(spec, 'receivers')).toEqual([{ kind: 'receiver', name: 'Torino', lat: 45.044, lon: 7.672 }]);
    const mean = (haversineM(45, 7.5, 45.1, 7.6) + haversineM(44.6, 8.9, 44.5, 8.7)) / 2000;
    expect(spec.title.subtitle).toContain(`mean error ${mean.toFixed(1)} km`);
    expect(JSON.stringify(spec)).toContain('longitude (°E)');
    expect(JSON.stringify(spec)).toContain('latitude (°N)');
  });

  it('the error CDF steps through the sorted errors, model against the centroid baseline', () => {
    expect(cdfPoints([3, 1, 2, NaN])).toEqual([{ x: 0, fraction: 0 }, { x: 1, fraction: 1 / 3 }, { x: 2, fraction: 2 / 3 }, { x: 3, fraction: 1 }]);
    const spec = errorCdfSpec({ modelKm: [10, 20], baselineKm: [60, 40, 50] });
    const rows = dataNamed(spec, 'cdf');
    expect(rows.filter((r) => String(r.series).startsWith('model')).map((r) => [r.error_km, r.fraction])).toEqual([[0, 0], [10, 0.5], [20, 1]]);
    expect(rows.filter((r) => String(r.series).startsWith('centroid')).map((r) => r.error_km)).toEqual([0, 40, 50, 60]);
    expect(spec.title.subtitle).toContain('mean 15.0 km vs 50.0 km'); // and 3.33× better
    expect(spec.title.subtitle).toContain('3.33×');
  });

  it('the confusion matrix counts (true, predicted) pairs; the training curves hold loss and lr per epoch', () => {
    expect(confusionCounts([0, 1, 1, 2, 2, 2], [0, 1, 2, 2, 2, 0], 3)).toEqual([[1, 0, 0], [0, 1, 1], [1, 0, 2]]);
    const cm = confusionMatrixSpec({ counts: [[3, 1], [0, 4]], labels: ['a', 'b'] });
    expect(dataNamed(cm, 'cells')).toEqual([
      { true_class: 'a', predicted_class: 'a', count: 3, share: 0.75 }, { true_class: 'a', predicted_class: 'b', count: 1, share: 0.25 },
      { true_class: 'b', predicted_class: 'a', count: 0, share: 0 }, { true_class: 'b', predicted_class: 'b', count: 4, share: 1 },
    ]);
    expect(cm.title.subtitle).toContain('accuracy 87.5 %');
    const tc = trainingCurvesSpec([{ epoch: 0, trainLoss: 2, valLoss: 1.5, lr: 1e-3 }, { epoch: 1, trainLoss: 1, valLoss: 1.2, lr: 5e-4 }]);
    expect(dataNamed(tc, 'loss')).toEqual([
      { epoch: 0, split: 'train', loss: 2 }, { epoch: 0, split: 'validation', loss: 1.5 },
      { epoch: 1, split: 'train', loss: 1 }, { epoch: 1, split: 'validation', loss: 1.2 },
    ]);
    expect(dataNamed(tc, 'lr')).toEqual([{ epoch: 0, lr: 1e-3 }, { epoch: 1, lr: 5e-4 }]);
    expect(tc.title.subtitle).toContain('best validation loss 1.200 at epoch 1');
  });

  it('predicted vs true: one panel per output with its MAE and R²', () => {
    const spec = predictedVsTrueSpec({ truth: [[1, 10], [2, 20], [3, 30]], predicted: [[1, 12], [2, 18], [4, 30]], names: ['a', 'b'] });
    expect(dataNamed(spec, 'points')).toEqual([
      { output: 'a', truth: 1, predicted: 1 }, { output: 'a', truth: 2, predicted: 2 }, { output: 'a', truth: 3, predicted: 4 },
      { output: 'b', truth: 10, predicted: 12 }, { output: 'b', truth: 20, predicted: 18 }, { output: 'b', truth: 30, predicted: 30 },
    ]);
    expect(spec.title.subtitle).toContain('a: MAE 0.333, R² 0.500'); // SSE 1, SST 2
    expect(spec.title.subtitle).toContain('b: MAE 1.33, R² 0.960');  // SSE 8, SST 200
  });

  it('image names follow mlflow.log_image: key with / as ~, step, timestamp, uuid; bad keys are refused', () => {
    expect(imageFileStem('test/position_map', 12, 1700000000123, 'u-1')).toBe('test~position_map+step+12+timestamp+1700000000123+u-1');
    expect(() => imageFileStem('a:b', 0, 0)).toThrow(/image key 'a:b' may only contain/);
  });
});

describe('rendering', () => {
  it('the map\'s SVG has one ellipse line and one error rule per transmitter, a point per position and receiver, and the receiver\'s name', async () => {
    const svg = await renderSvg(localizationMapSpec({
      truth: [[45, 7.5], [44.6, 8.9]], predicted: [[45.1, 7.6], [44.5, 8.7]], sigma: [[0.05, 0.1], [0.02, 0.03]],
      receivers: [{ name: 'Torino', lat: 45.044, lon: 7.672 }],
    }));
    const marks = (svg.match(/aria-roledescription="[^"]*"/g) ?? []).reduce<Record<string, number>>((m, k) => ({ ...m, [k.slice(22, -1)]: (m[k.slice(22, -1)] ?? 0) + 1 }), {});
    expect(marks).toMatchObject({ 'line mark': 2, 'rule mark': 2, point: 5, 'text mark': 1, legend: 1, title: 1 });
    expect(svg).toContain('>Torino</text>');
    expect(svg).toContain('latitude (°N)');
  });

  it('renders SVG with the expected marks, a 2× PNG and a 256 px WebP thumbnail that Pillow decodes, not blank', async () => {
    const spec = errorCdfSpec({ modelKm: [5, 9, 12, 30], baselineKm: [40, 55, 61, 90] });
    const r = await renderFigure(spec);
    expect(r.svg).toMatch(/^<svg /);
    expect(r.svg).toContain('class="mark-line'); // the two CDF lines
    expect((r.svg.match(/<path[^>]*aria-roledescription="line mark"/g) ?? []).length).toBe(2);
    for (const text of ['position error (km)', 'Position error on the test split (CDF)', 'centroid baseline']) expect(r.svg).toContain(text);
    expect([...r.png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const w = Number(/width="(\d+)"/.exec(r.svg)![1]);
    expect(r.width).toBe(2 * w);
    expect(r.thumbnail.format).toBe('webp');
    expect(Math.max(r.thumbnail.width, r.thumbnail.height)).toBe(256);
    const dir = tempDir();
    writeFileSync(join(dir, 'f.png'), r.png);
    writeFileSync(join(dir, 't.webp'), r.thumbnail.data);
    const [png, webp] = await decode([join(dir, 'f.png'), join(dir, 't.webp')]);
    expect(png).toMatchObject({ format: 'PNG', size: [r.width, r.height] });
    expect(webp).toMatchObject({ format: 'WEBP', size: [r.thumbnail.width, r.thumbnail.height] });
    expect(png!.std).toBeGreaterThan(10);
    expect(webp!.std).toBeGreaterThan(10);
  });
});

describe('FigureLogger in a fit', () => {
  it('a tiny fit + test logs the map, the error CDF and the training curves as MLflow images and figure artifacts', async () => {
    const dir = tempDir();
    const trackingUri = `sqlite:///${join(dir, 'mlflow.db')}`;
    const data = HeimdallDataModule.synthetic({ samples: 60, seed: 3, batchSize: 16 });
    const logger = new MLflowLogger({ runName: 'figures', trackerOptions: { trackingUri, artifactUri: join(dir, 'artifacts') } });
    const ckpt = new ModelCheckpoint({ saveTopK: 1 });
    const trainer = new Trainer({ ...base, maxEpochs: 2, defaultRootDir: dir, callbacks: [ckpt], logger });
    const figures = trainer.callbacks.find((c): c is FigureLogger => c instanceof FigureLogger)!;
    expect(figures).toBeDefined(); // added by default with a logger, before it
    expect(trainer.callbacks.indexOf(figures)).toBeLessThan(trainer.callbacks.indexOf(logger));
    await trainer.fit(ConvNeXt.localization('atto', { inChans: 7, seed: 3 }), data);
    const test = await trainer.test({ ckptPath: 'best' });
    await logger.close();

    expect(figures.written.map((f) => f.name)).toEqual(['training_curves', 'position_map', 'error_cdf']);
    // The map's and the CDF's numbers are the test metrics' and the baseline's.
    const spec = (name: string) => JSON.parse(readFileSync(join(dir, 'figures', `${name}.vl.json`), 'utf8')) as VegaLiteSpec;
    const errorsKm = dataNamed(spec('position_map'), 'errors').map((e) => e.error_km as number);
    const splits = await data.setup();
    expect(errorsKm.length).toBe(splits.test.size);
    const meanM = (errorsKm.reduce((a, b) => a + b, 0) / errorsKm.length) * 1000;
    expect(Math.abs(meanM - test['test/position_error_m']!)).toBeLessThan(0.01 * test['test/position_error_m']! + 10);
    const cdf = dataNamed(spec('error_cdf'), 'cdf');
    const baseline = cdf.filter((r) => String(r.series).startsWith('centroid')).map((r) => r.error_km as number).slice(1);
    const expected = data.centroidErrors(splits.train, splits.test).map((m) => m / 1000).sort((a, b) => a - b);
    expect(baseline).toEqual(expected);
    expect(dataNamed(spec('position_map'), 'receivers').map((r) => r.name)).toEqual(data.info.receivers.map((r) => r.name));
    expect(dataNamed(spec('training_curves'), 'loss').filter((r) => r.split === 'validation').length).toBe(2);

    const out = JSON.parse(await python(`
import sys, json, mlflow
c = mlflow.MlflowClient(sys.argv[1])
r = c.get_run(sys.argv[2])
images = [a.path for a in c.list_artifacts(r.info.run_id, 'images')]
figs = [a.path for a in c.list_artifacts(r.info.run_id, 'figures')]
local = [c.download_artifacts(r.info.run_id, p, sys.argv[3]) for p in images]
print(json.dumps({'status': r.info.status, 'tag': r.data.tags.get('mlflow.loggedImages'), 'images': images, 'figures': figs, 'local': local,
                  'step': r.data.metrics and c.get_metric_history(r.info.run_id, 'test/loss')[-1].step}))
`, [trackingUri, logger.runId!, join(dir, 'download')]));
    expect(out.status).toBe('FINISHED');
    expect(out.tag).toBe('True');
    expect(out.figures.sort()).toEqual(['training_curves', 'position_map', 'error_cdf'].flatMap((n) => [`figures/${n}.png`, `figures/${n}.svg`, `figures/${n}.vl.json`]).sort());
    // images/<key with ~>+step+<s>+timestamp+<ms>+<uuid>.png and …+compressed.webp, parsed as MLflow's UI parses them
    const parsed = (out.images as string[]).map((p) => {
      const m = /^images\/([^+]+)\+step\+(\d+)\+timestamp\+(\d+)\+([0-9a-f-]{36})(\+compressed)?\.(png|webp)$/.exec(p);
      expect(m, p).not.toBeNull();
      return { key: m![1]!.replace(/~/g, '/'), step: Number(m![2]), compressed: Boolean(m![5]), ext: m![6] };
    });
    expect(parsed.filter((p) => !p.compressed).map((p) => p.key).sort()).toEqual(['test/error_cdf', 'test/position_map', 'train/loss_and_lr']);
    expect(parsed.filter((p) => p.compressed).every((p) => p.ext === 'webp')).toBe(true);
    expect(parsed.filter((p) => p.compressed).length).toBe(3);
    expect(new Set(parsed.map((p) => p.step))).toEqual(new Set([trainer.globalStep])); // the step the test metrics are logged at
    expect(out.step).toBe(trainer.globalStep);
    const decoded = await decode(out.local);
    decoded.forEach((d, i) => {
      expect(d.format).toBe(parsed[i]!.compressed ? 'WEBP' : 'PNG');
      if (parsed[i]!.compressed) expect(Math.max(...d.size)).toBe(256);
      else expect(Math.max(...d.size)).toBeGreaterThan(1000);
      expect(d.std).toBeGreaterThan(10);
    });
  }, 240_000);

  it('a figure that cannot be written is one warning: test() returns its metrics and the run ends FINISHED', async () => {
    const dir = tempDir();
    const trackingUri = `sqlite:///${join(dir, 'mlflow.db')}`;
    const blocked = join(dir, 'not-a-dir');
    writeFileSync(blocked, 'a file where the figures folder should be');
    const n = 60;
    const { inputs, targets } = blobs(n, 11);
    const classes = Int32Array.from({ length: n }, (_, i) => (targets[2 * i]! > 0 ? 1 : 0));
    const data = new TensorDataModule(inputs, [n, 3, 32, 32], classes, [n], { batchSize: 16, seed: 3 });
    const logger = new MLflowLogger({ runName: 'blocked', trackerOptions: { trackingUri, artifactUri: join(dir, 'artifacts') } });
    const trainer = new Trainer({ ...base, maxEpochs: 1, defaultRootDir: dir, logger, callbacks: [new FigureLogger({ dir: join(blocked, 'figures') })] });
    const warnings: string[] = [];
    const onWarning = (w: Error) => { if (w.name === 'FigureWarning') warnings.push(w.message); };
    process.on('warning', onWarning);
    try {
      await trainer.fit(ConvNeXt.classification('atto', 2, { seed: 11 }), data);
      const test = await trainer.test();
      expect(test['test/loss']).toBeTypeOf('number');
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
    } finally {
      process.off('warning', onWarning);
      await logger.close();
    }
    expect(warnings.length).toBe(2); // one for the training curves, one for the test figures
    expect(warnings[1]).toMatch(/figures not made \(confusion_matrix: .*not-a-dir.*\); training goes on/);
    const run = JSON.parse(await python(`
import sys, json, mlflow
r = mlflow.MlflowClient(sys.argv[1]).get_run(sys.argv[2])
print(json.dumps({'status': r.info.status, 'tag': r.data.tags.get('mlflow.loggedImages'), 'loss': r.data.metrics.get('test/loss')}))
`, [trackingUri, logger.runId!]));
    expect(run).toMatchObject({ status: 'FINISHED', tag: null });
    expect(run.loss).toBeTypeOf('number');
  }, 180_000);

  it('classification: a confusion matrix of the test split whose counts agree with the test accuracy', async () => {
    const dir = tempDir();
    const n = 60;
    const { inputs, targets } = blobs(n, 12);
    const classes = Int32Array.from({ length: n }, (_, i) => (targets[2 * i]! > 0 ? 1 : 0));
    const data = new TensorDataModule(inputs, [n, 3, 32, 32], classes, [n], { batchSize: 16, seed: 3 });
    const figures = new FigureLogger({ classNames: ['upper', 'lower'] });
    const trainer = new Trainer({ ...base, maxEpochs: 1, defaultRootDir: dir, callbacks: [figures] });
    await trainer.fit(ConvNeXt.classification('atto', 2, { seed: 12 }), data);
    const test = await trainer.test();
    expect(figures.written.map((f) => f.name)).toEqual(['training_curves', 'confusion_matrix']);
    const cells = dataNamed(JSON.parse(readFileSync(join(dir, 'figures', 'confusion_matrix.vl.json'), 'utf8')), 'cells');
    const total = cells.reduce((a, c) => a + (c.count as number), 0);
    expect(total).toBe(data.targets('test')!.shape[0]);
    const correct = cells.filter((c) => c.true_class === c.predicted_class).reduce((a, c) => a + (c.count as number), 0);
    expect(correct / total).toBeCloseTo(test['test/accuracy']!, 6);
    expect(cells.filter((c) => c.true_class === 'upper').reduce((a, c) => a + (c.count as number), 0)).toBe(Array.from(data.targets('test')!.data).filter((t) => t === 0).length);
    for (const ext of ['png', 'svg', 'vl.json']) expect(existsSync(join(dir, 'figures', `confusion_matrix.${ext}`))).toBe(true);
    expect(readdirSync(join(dir, 'figures', 'mlflow-images')).length).toBe(4); // 2 figures × (image + thumbnail)
  }, 180_000);
});
