// fit() through the MLflowLogger logs the data's splits as MLflow dataset inputs (training / validation /
// testing) and system metrics while it trains (on by default, off with `logSystemMetrics: false`), read back
// with the pinned Python MLflow; the synthetic set's digest follows from its options, a directory's from its files.
import { readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { resolveTrainFlags, trainCommand } from '../../lib/cli/train.js';
import { HeimdallDataModule } from '../../lib/data/heimdall.js';
import { ConvNeXt } from '../../lib/model.js';
import { MLflowLogger, Trainer } from '../../lib/trainer/index.js';
import { runInputsPython } from '../tracking/helpers/python.js';
import { tempDir } from '../helpers/tmp.js';

interface PyRun { inputs: { name: string; digest: string; source_type: string; source: string; profile: string; tags: Record<string, string> }[]; system: Record<string, { step: number }[]> }

async function readRuns(trackingUri: string, runIds: string[]): Promise<Record<string, PyRun>> {
  return (await runInputsPython<{ runs: Record<string, PyRun> }>({ tracking_uri: trackingUri, run_ids: runIds })).runs;
}

const base = { device: 'cpu', threads: 2, enableProgressBar: false, enableModelSummary: false, handleSignals: false, maxEpochs: 1, optimizer: { name: 'adamw' as const, lr: 1e-3 } };
const FAST_SYSTEM_METRICS = { MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL: '0.1', MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING: '1' };

describe('fit() logs its data and the system', () => {
  it('logs train/val/test as dataset inputs (reused for the same options) and system metrics unless turned off', async () => {
    const dir = tempDir();
    const trackingUri = `sqlite:///${join(dir, 'mlflow.db')}`;
    const fitOnce = async (logSystemMetrics: boolean | undefined, seed = 3) => {
      const logger = new MLflowLogger({ trackerOptions: { trackingUri, artifactUri: join(dir, 'artifacts'), dotenvPath: false, env: FAST_SYSTEM_METRICS } });
      const trainer = new Trainer({ ...base, defaultRootDir: join(dir, `out-${seed}-${String(logSystemMetrics)}`), logger, ...(logSystemMetrics === undefined ? {} : { logSystemMetrics }) });
      await trainer.fit(ConvNeXt.localization('convnext_atto', { inChans: 7, seed: 1 }), HeimdallDataModule.synthetic({ samples: 40, seed, batchSize: 8 }));
      await logger.close();
      return logger.runId!;
    };
    const first = await fitOnce(undefined); // the default: system metrics on
    const second = await fitOnce(false);
    const runs = await readRuns(trackingUri, [first, second]);

    const r1 = runs[first]!;
    expect(r1.inputs.map((i) => `${i.name}:${i.tags['mlflow.data.context']}`).sort()).toEqual([
      'heimdall-synthetic-test:testing', 'heimdall-synthetic-train:training', 'heimdall-synthetic-val:validation',
    ]);
    // 40 samples: test 4, val ⌊0.2 · 36⌋ = 7, train 29 (the reference split).
    const profiles = Object.fromEntries(r1.inputs.map((i) => [i.tags['mlflow.data.context'], JSON.parse(i.profile)]));
    expect(profiles.training).toMatchObject({ features_shape: [29, 7, 128, 32], targets_shape: [29, 2], num_samples: 29 });
    expect(profiles.validation.num_samples).toBe(7);
    expect(profiles.testing.num_samples).toBe(4);
    const source = JSON.parse(r1.inputs[0]!.source) as { tags: Record<string, string> };
    expect(r1.inputs[0]!.source_type).toBe('code');
    expect(JSON.parse(source.tags['heimdall.data.options']!)).toMatchObject({ samples: 40, seed: 3, preset: 'default' });
    expect(Object.keys(r1.system)).toContain('system/cpu_utilization_percentage');
    expect(r1.system['system/cpu_utilization_percentage']!.length).toBeGreaterThanOrEqual(1);

    // Same options → same digests → the same three dataset rows; logSystemMetrics: false → no system metrics.
    const digests = (r: PyRun) => Object.fromEntries(r.inputs.map((i) => [i.name, i.digest]));
    expect(digests(runs[second]!)).toEqual(digests(r1));
    expect(runs[second]!.system).toEqual({});
    const db = new Database(join(dir, 'mlflow.db'), { readonly: true });
    try {
      expect((db.prepare('SELECT COUNT(*) AS n FROM datasets').get() as { n: number }).n).toBe(3);
      expect((db.prepare('SELECT COUNT(*) AS n FROM inputs').get() as { n: number }).n).toBe(6);
    } finally {
      db.close();
    }
    // Other options → other digests.
    const other = HeimdallDataModule.synthetic({ samples: 40, seed: 4, batchSize: 8 }).mlflowDatasets();
    expect(other.map((i) => i.dataset.digest)).not.toEqual(Object.values(digests(r1)));
  });

  it("a directory's digest follows from its manifest and its files", async () => {
    const dir = tempDir();
    await HeimdallDataModule.writeSynthetic(dir, 12, { seed: 2 });
    const digestsOf = async () => (await HeimdallDataModule.fromDirectory(dir, { batchSize: 4 })).mlflowDatasets();
    const a = await digestsOf();
    expect(a.map((i) => i.dataset.name)).toEqual([`heimdall-${dir.split('/').pop()}-train`, `heimdall-${dir.split('/').pop()}-val`, `heimdall-${dir.split('/').pop()}-test`]);
    expect(a[0]!.dataset.sourceType).toBe('local');
    expect(JSON.parse(a[0]!.dataset.source)).toEqual({ uri: resolve(dir) });
    expect((await digestsOf()).map((i) => i.dataset.digest)).toEqual(a.map((i) => i.dataset.digest)); // same files: same digest
    // The same samples with another manifest (a field the reader ignores): other digests.
    const manifest = join(dir, 'manifest.json');
    const text = readFileSync(manifest, 'utf8');
    writeFileSync(manifest, text.replace(/^\{/, '{"note": "re-recorded", '));
    const m = await digestsOf();
    for (let i = 0; i < 3; i++) expect(m[i]!.dataset.digest).not.toBe(a[i]!.dataset.digest);
    writeFileSync(manifest, text);
    expect((await digestsOf()).map((i) => i.dataset.digest)).toEqual(a.map((i) => i.dataset.digest));
    // One sample fewer (its two files moved away): every split's digest changes.
    const [iq] = readdirSync(dir).filter((n) => n.endsWith('_iq.npy')).sort();
    const id = iq!.slice(0, -'_iq.npy'.length);
    const away = tempDir();
    renameSync(join(dir, `${id}_iq.npy`), join(away, `${id}_iq.npy`));
    renameSync(join(dir, `${id}_label.npy`), join(away, `${id}_label.npy`));
    const b = await digestsOf();
    for (let i = 0; i < 3; i++) expect(b[i]!.dataset.digest).not.toBe(a[i]!.dataset.digest);
  });
});

describe('train --[no-]log-system-metrics', () => {
  const flagsOf = (args: string[]) => {
    const cmd = trainCommand().exitOverride();
    cmd.action(() => undefined);
    cmd.parse(args, { from: 'user' });
    return resolveTrainFlags(cmd);
  };
  it('is on by default (the Trainer\'s logSystemMetrics) and off with --no-log-system-metrics', () => {
    expect(flagsOf([]).logSystemMetrics).toBe(true);
    expect(flagsOf(['--no-log-system-metrics']).logSystemMetrics).toBe(false);
  });
});
