import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Option } from 'commander';
import { resolveTrainFlags, trainCommand, type TrainFlags } from '../../lib/cli/train.js';
import { exitCode } from '../../lib/cli.js';
import { ConfigError, earlyStoppingOptionsSchema, PRECISIONS, trainerOptionsSchema } from '../../lib/config.js';
import { syntheticOptionsSchema } from '../../lib/data/heimdall.js';
import { HeimdallError } from '../../lib/errors.js';
import { ConvNeXt } from '../../lib/model.js';
import { exportRun, findRunCheckpoint } from '../../lib/onnx/run_export.js';
import { MLflowTracker } from '../../lib/tracking/index.js';
import { python, repoRoot } from '../helpers/python.js';
import { tempDir } from '../helpers/tmp.js';

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI from source (tsx) in `cwd`; `onStdout` may act on the running process. */
function cli(args: string[], cwd: string, env: Record<string, string> = {}, onSpawn?: (p: ReturnType<typeof spawn>) => void): Promise<Result> {
  return new Promise((resolve, reject) => {
    const tsx = pathToFileURL(join(repoRoot, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
    const p = spawn(process.execPath, ['--import', tsx, join(repoRoot, 'lib', 'bin.ts'), ...args], {
      cwd,
      env: { ...process.env, MLFLOW_TRACKING_URI: '', ...env, CI: 'true' },
    });
    let stdout = '', stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    onSpawn?.(p);
  });
}

const READ_RUN = `
import sys, json, mlflow
# MLflow 3 resolves a run's logged model (list_artifacts(run, 'model')) through the default tracking URI
mlflow.set_tracking_uri(sys.argv[1])
c = mlflow.MlflowClient(sys.argv[1])
exp = c.get_experiment_by_name('heimdall-localization')
runs = c.search_runs([exp.experiment_id])
out = []
for r in runs:
    hist = c.get_metric_history(r.info.run_id, 'train/loss')
    arts = [a.path for a in c.list_artifacts(r.info.run_id, 'checkpoints')]
    arts += [a.path for d in ('checkpoints/best', 'checkpoints/last', 'model') for a in c.list_artifacts(r.info.run_id, d)]
    # the run's logged models (MLflow 3), their files named as runs:/<id>/<name>/… reads them
    models = [m for m in mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format='list') if m.source_run_id == r.info.run_id]
    arts += [f'{m.name}/{a.path}' for m in models for a in c.list_logged_model_artifacts(m.model_id)]
    outputs = [[o.model_id, o.step] for o in (r.outputs.model_outputs if r.outputs else [])]
    # each metric of a logged model with the dataset it was measured on (the model page's "Datasets used")
    model_datasets = {x.key: x.dataset_name for m in models for x in (mlflow.get_logged_model(m.model_id).metrics or [])}
    inputs = {t.value: di.dataset.name for di in r.inputs.dataset_inputs for t in di.tags if t.key == 'mlflow.data.context'}
    out.append({'id': r.info.run_id, 'name': r.info.run_name, 'status': r.info.status, 'params': r.data.params,
                'metrics': r.data.metrics, 'tags': r.data.tags, 'train_loss_steps': [m.step for m in hist], 'artifacts': arts,
                'experiment_tags': exp.tags, 'experiment_id': exp.experiment_id, 'models': [[m.model_id, m.name, str(m.status)] for m in models], 'outputs': outputs,
                'model_datasets': model_datasets, 'inputs': inputs})
print(json.dumps(out))
`;

/** The flags `train` would run with for these arguments (parsed by the real command, nothing trained). */
function flagsOf(args: string[]): TrainFlags {
  const cmd = trainCommand().exitOverride();
  cmd.action(() => undefined);
  cmd.parse(args, { from: 'user' });
  return resolveTrainFlags(cmd);
}

describe('train --config <json>', () => {
  const dir = tempDir();
  const cfg = join(dir, 'train.json');
  writeFileSync(cfg, JSON.stringify({ backbone: 'CONVNEXT_TINY', epochs: 7, learningRate: 0.01, batchSize: 8, seed: 5, exportOnnx: false, threads: 1, runName: 'from-config' }));

  it('takes every option from the file when no flag is given; the rest keep their defaults', () => {
    const f = flagsOf(['--config', cfg]);
    expect(f).toMatchObject({ backbone: 'convnext_tiny', epochs: 7, learningRate: 0.01, batchSize: 8, seed: 5, exportOnnx: false, threads: 1, runName: 'from-config' });
    expect(f).toMatchObject({ weightDecay: 1e-5, patience: 5, samples: 2000, outputDir: './outputs', device: 'auto' });
    expect(flagsOf([])).toMatchObject({ backbone: 'convnext_large', epochs: 100, learningRate: 1e-3, exportOnnx: true });
  });

  it('explicit flags win over the file, also when they equal the default, and booleans both ways', () => {
    const f = flagsOf(['--epochs', '3', '--config', cfg, '--learning-rate', '0.001', '--export-onnx', '--backbone', 'atto', '--run-name', 'cli']);
    expect(f).toMatchObject({ epochs: 3, learningRate: 0.001, exportOnnx: true, backbone: 'convnext_atto', runName: 'cli' });
    expect(f).toMatchObject({ batchSize: 8, seed: 5, threads: 1 }); // not given on the command line: from the file
    const on = join(dir, 'on.json');
    writeFileSync(on, JSON.stringify({ exportOnnx: true, freezeBackbone: true }));
    expect(flagsOf(['--config', on, '--no-export-onnx', '--no-freeze-backbone'])).toMatchObject({ exportOnnx: false, freezeBackbone: false });
    expect(flagsOf(['--config', on])).toMatchObject({ exportOnnx: true, freezeBackbone: true });
  });

  it('a flag overrides a bad value in the file; bad values left in the file, or a missing file, are named', () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ epochs: 'many', batchSize: 1 }));
    expect(() => flagsOf(['--config', bad, '--epochs', '2'])).toThrow(/--batch-size: /);
    let err: unknown;
    try {
      flagsOf(['--config', bad, '--epochs', '2', '--batch-size', '4']);
      flagsOf(['--config', join(dir, 'missing.json')]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues).toEqual([expect.stringMatching(/^--config .*missing\.json: ENOENT/)]);
  });
});

describe('train flags come from the library\'s schemas', () => {
  const cmd = trainCommand();
  let help = '';  // what `heimdall-torch train --help` prints, unwrapped
  cmd.configureHelp({ helpWidth: 10_000 }).configureOutput({ writeOut: (s) => (help += s) });
  cmd.outputHelp();
  const option = (long: string) => cmd.options.find((o: Option) => o.long === long)!;
  const defaults = trainerOptionsSchema.parse({});

  it('--help shows the schemas\' defaults: learning rate, weight decay, epochs, device, precision, seed, …', () => {
    const shown = (long: string) => new RegExp(`^\\s*${long} <[^>]+>.*\\(default: ([^)]+)\\)`, 'm').exec(help)?.[1];
    expect(Number(shown('--learning-rate'))).toBe(defaults.optimizer.lr);
    expect(option('--learning-rate').defaultValue).toBe(defaults.optimizer.lr);
    expect(Number(shown('--weight-decay'))).toBe(defaults.optimizer.weightDecay);
    expect(Number(shown('--epochs'))).toBe(defaults.maxEpochs);
    expect(Number(shown('--seed'))).toBe(defaults.seed);
    expect(Number(shown('--warmup-steps'))).toBe(defaults.schedule.warmupSteps);
    expect(Number(shown('--grad-clip-norm'))).toBe(defaults.gradClipNorm);
    expect(shown('--device')).toBe(JSON.stringify(defaults.device));
    expect(shown('--output-dir')).toBe(JSON.stringify(defaults.defaultRootDir));
    expect(Number(shown('--patience'))).toBe(earlyStoppingOptionsSchema.parse({}).patience);
    expect(Number(shown('--batch-size'))).toBe(syntheticOptionsSchema.parse({}).batchSize);
    expect(Number(shown('--samples'))).toBe(syntheticOptionsSchema.parse({}).samples);
    expect(option('--precision').argChoices).toEqual([...PRECISIONS]);
    expect(option('--precision').defaultValue).toBe(defaults.precision);
  });

  it('--backbone takes the native registry\'s variants (ConvNeXt.variants()) and lists them', () => {
    const variants = ConvNeXt.variants();
    expect(help).toContain(`Backbones: ${variants.map((v) => v.toUpperCase()).join(', ')}`);
    for (const v of variants) expect(flagsOf(['--backbone', v.toUpperCase()]).backbone).toBe(v);
    expect(() => flagsOf(['--backbone', 'convnext_huge'])).toThrow(`valid: ${variants.map((v) => v.toUpperCase()).join(', ')}`);
  });

  it('library errors name their option, not a flag; the CLI names the flag and maps codes to exit codes', async () => {
    const dir = tempDir();
    const tracker = new MLflowTracker({ trackingUri: `sqlite:///${join(dir, 'mlflow.db')}`, handleSignals: false });
    try {
      const bad = await exportRun(tracker, 'not a run id!').catch((e: unknown) => e);
      expect(bad).toBeInstanceOf(HeimdallError);
      expect(bad).toMatchObject({ code: 'HEIMDALL_INVALID_ARGUMENT', option: 'runId' });
      expect((bad as Error).message).not.toMatch(/--/);
      expect(exitCode(bad)).toBe(2);
      const missing = await exportRun(tracker, 'ffffffffffffffffffffffffffffffff').catch((e: unknown) => e);
      expect(missing).toMatchObject({ code: 'HEIMDALL_NOT_FOUND', option: 'runId' });
      expect((missing as Error).message).not.toMatch(/--/);
      expect(exitCode(missing)).toBe(1);
      const run = { runId: 'r', artifactUri: dir, tags: {}, params: {} } as never;
      const file = await findRunCheckpoint(tracker, run, join(dir, 'nope.safetensors'), dir).catch((e: unknown) => e);
      expect(file).toMatchObject({ code: 'HEIMDALL_NOT_FOUND', option: 'checkpoint' });
      expect((file as Error).message).not.toMatch(/--/);
      expect(exitCode(new ConfigError(['x']))).toBe(2);
    } finally {
      await tracker.close();
    }
  });
});

describe('heimdall-torch train (CLI)', () => {
  it('trains on synthetic data into ./mlflow.db: one FINISHED run that Python MLflow reads back', async () => {
    const dir = tempDir();
    const r = await cli(['train', '--backbone', 'CONVNEXT_ATTO', '--epochs', '2', '--samples', '150', '--batch-size', '16', '--run-name', 'cli-e2e', '--head-dropout', '0.1', '--log-every-n-steps', '5'], dir);
    expect(r.stderr).not.toMatch(/Error/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/centroid baseline/);
    expect(r.stdout).toMatch(/Trainable params/); // ModelSummary, on by default
    expect(existsSync(join(dir, 'mlflow.db'))).toBe(true);
    const runs = JSON.parse(await python(READ_RUN, [`sqlite:///${join(dir, 'mlflow.db')}`])) as Array<Record<string, any>>;
    expect(runs.length).toBe(1);
    const run = runs[0]!;
    expect(run.name).toBe('cli-e2e');
    expect(run.status).toBe('FINISHED');
    expect(run.params['optimizer/lr']).toBe('0.001');
    expect(run.params['model/variant']).toBe('convnext_atto');
    expect(run.params['model/head_dropout']).toBe('0.1');
    expect(run.params['data/batch_size']).toBe('16');
    expect(run.tags.phase).toBe('training');
    // 150 samples → 15 test, 27 val, 108 train → 7 batches × 2 epochs
    expect(run.train_loss_steps).toEqual([5, 10]); // --log-every-n-steps 5 (Lightning's default is 50)
    expect(run.metrics['val/position_error_m']).toBeGreaterThan(0);
    expect(run.metrics.final_test_loss).toBeTypeOf('number');
    expect(run.metrics['lr-AdamW']).toBeGreaterThan(0);
    expect(run.artifacts.some((a: string) => a.startsWith('checkpoints/best/epoch='))).toBe(true);
    expect(run.artifacts).toContain('checkpoints/last/last.safetensors');
    expect(run.artifacts).toEqual(expect.arrayContaining(['model/MLmodel', 'model/model.onnx']));
    // the exported model is the run's MLflow 3 logged model, its output; the experiment opens in the training view
    expect(run.models).toEqual([[expect.stringMatching(/^m-[0-9a-f]{32}$/), 'model', 'READY']]);
    expect(run.outputs).toEqual([[run.models[0][0], expect.any(Number)]]);
    expect(run.experiment_tags['mlflow.experimentKind']).toBe('custom_model_development');
    expect(Object.keys(run.inputs).sort()).toEqual(['testing', 'training', 'validation']);
    expect(run.model_datasets['val/loss']).toBe(run.inputs.validation);
    expect(run.model_datasets['train/loss_epoch']).toBe(run.inputs.training);
    expect(run.model_datasets.epoch).toBeNull();
    expect(r.stdout).toContain(`in MLflow's UI: http://127.0.0.1:5000/#/experiments/${run.experiment_id}/runs/${run.id}?workflowType=machine_learning (after \`mlflow ui --backend-store-uri sqlite:///mlflow.db\`)`);
    expect(run.tags['mlflow.note.content']).toMatch(/^heimdall-torch trained convnext_atto with a localization head \(.*7 input channels\) on synthetic RF, 150 samples.* for up to 2 epochs on cpu at 32-bit precision/);
    expect(r.stdout).toMatch(/onnxruntime-node .* → PASSED/);
    // The figures: where they are on disk, and in the run (images with the tag the UI reads; figures/ artifacts).
    expect(r.stdout).toContain(`figures: ${join(dir, 'outputs', 'figures')}/{training_curves,position_map,error_cdf}.{png,svg}`);
    expect(run.tags['mlflow.loggedImages']).toBe('True');
    for (const name of ['training_curves', 'position_map', 'error_cdf']) expect(existsSync(join(dir, 'outputs', 'figures', `${name}.png`))).toBe(true);
    // MLflow loads the exported model of the run (onnx flavor) and it predicts [batch, 2] positions.
    const shapes = await python(
      `import sys, numpy as np, mlflow
mlflow.set_tracking_uri(sys.argv[1])
m = mlflow.onnx.load_model(f'runs:/{sys.argv[2]}/model')
import onnxruntime as ort
s = ort.InferenceSession(m.SerializeToString())
out = s.run(None, {'mel_spectrogram': np.zeros((3, 7, 128, 32), np.float32)})
print([list(o.shape) for o in out])`,
      [`sqlite:///${join(dir, 'mlflow.db')}`, run.id],
    );
    expect(shapes.trim()).toBe('[[3, 2], [3, 2]]');
  }, 300_000);  // trains, exports and reads back: ~90 s alone on 2 busy cores

  it('trains ConvNeXt V2 (--backbone CONVNEXTV2_ATTO): the run names its family and variant, the ONNX export passes', async () => {
    const dir = tempDir();
    const r = await cli(['train', '--backbone', 'CONVNEXTV2_ATTO', '--epochs', '1', '--samples', '100', '--batch-size', '16', '--run-name', 'cli-v2'], dir);
    expect(r.stderr).not.toMatch(/Error/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/onnxruntime-node .* → PASSED/);
    const runs = JSON.parse(await python(READ_RUN, [`sqlite:///${join(dir, 'mlflow.db')}`])) as Array<Record<string, any>>;
    const run = runs[0]!;
    expect(run.status).toBe('FINISHED');
    expect(run.params['model/variant']).toBe('convnextv2_atto');
    expect(run.params['model/family']).toBe('convnextv2');
    expect(run.tags.model).toBe('convnextv2_atto · localization');
    expect(Number.isFinite(run.metrics['val/loss'])).toBe(true);
    expect(run.artifacts).toEqual(expect.arrayContaining(['model/MLmodel', 'model/model.onnx']));
  }, 300_000);

  it('--auto-lr: the range test first, then training at its suggestion, logged as the rate used', async () => {
    const dir = tempDir();
    const r = await cli(['train', '--backbone', 'convnext_atto', '--epochs', '1', '--samples', '200', '--batch-size', '16', '--run-name', 'cli-auto-lr', '--auto-lr', '--no-export-onnx', '--no-figures'], dir);
    expect(r.stderr).not.toMatch(/Error/);
    expect(r.code).toBe(0);
    const said = /--auto-lr: learning rate (\S+) \(/.exec(r.stdout);
    expect(said, r.stdout).not.toBeNull();
    const runs = JSON.parse(await python(READ_RUN, [`sqlite:///${join(dir, 'mlflow.db')}`])) as Array<Record<string, any>>;
    const run = runs[0]!;
    const used = Number(run.params['auto_lr/used']);
    expect(Number(run.params['optimizer/lr'])).toBe(used);
    expect(used).toBeCloseTo(Number(said![1]), 2 - Math.floor(Math.log10(used)));
    expect(Number(run.params['auto_lr/steps'])).toBeGreaterThan(10);
    expect(used).not.toBe(0.001); // not the --learning-rate default
    const refused = await cli(['train', '--auto-lr', '--devices', '2'], tempDir());
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--auto-lr runs the range test in one process/);
  }, 300_000);

  it('Ctrl-C mid-fit: stops at a batch boundary, writes a checkpoint, ends the run KILLED, exits 130', async () => {
    const dir = tempDir();
    let sent = false;
    const r = await cli(['train', '--backbone', 'atto', '--epochs', '50', '--samples', '200', '--batch-size', '8', '--patience', '50'], dir, {}, (p) => {
      const poll = setInterval(() => {
        if (!sent && existsSync(join(dir, 'outputs', 'checkpoints', 'last.safetensors'))) {
          sent = true;
          p.kill('SIGINT');
        }
      }, 100);
      p.on('close', () => clearInterval(poll));
    });
    expect(sent).toBe(true);
    expect(r.code).toBe(130);
    expect(r.stdout).toMatch(/interrupted: checkpoint .*interrupted\.safetensors/);
    expect(existsSync(join(dir, 'outputs', 'checkpoints', 'interrupted.safetensors'))).toBe(true);
    const runs = JSON.parse(await python(READ_RUN, [`sqlite:///${join(dir, 'mlflow.db')}`])) as Array<Record<string, any>>;
    expect(runs.map((x) => x.status)).toEqual(['KILLED']);
    expect(runs[0]!.tags['heimdall.interrupted_by']).toBe('SIGINT');
    expect(runs[0]!.artifacts).toContain('checkpoints/interrupted.safetensors');

    // --resume continues the same MLflow run to the end.
    const resumed = await cli(['train', '--backbone', 'atto', '--epochs', '2', '--samples', '200', '--batch-size', '8', '--resume', join(dir, 'outputs', 'checkpoints', 'interrupted.safetensors')], dir);
    expect(resumed.code).toBe(0);
    const after = JSON.parse(await python(READ_RUN, [`sqlite:///${join(dir, 'mlflow.db')}`])) as Array<Record<string, any>>;
    expect(after.length).toBe(1);
    expect(after[0]!.id).toBe(runs[0]!.id);
    expect(after[0]!.status).toBe('FINISHED');
  }, 300_000);  // two trainings and an export: 133 s at load 12 on the 2-core machine

  it('names the flag or file at fault, with exit code 2', async () => {
    const dir = tempDir();
    const missing = await cli(['train', '--data-dir', join(dir, 'nope'), '--epochs', '1'], dir);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--data-dir: .*nope is not a directory/);

    const cfg = join(dir, 'bad.json');
    writeFileSync(cfg, '{"epochs": "many", "lerningRate": 1}');
    const bad = await cli(['train', '--config', cfg, '--backbone', 'CONVNEXT_HUGE'], dir);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--backbone: unknown backbone "CONVNEXT_HUGE"; valid: CONVNEXT_ATTO/);
    expect(bad.stderr).toMatch(/--epochs: /);
    expect(bad.stderr).toMatch(/unknown option\(s\) lerningRate/);

    const empty = join(dir, 'empty');
    mkdirSync(empty);
    const noData = await cli(['train', '--data-dir', empty, '--epochs', '1', '--backbone', 'atto'], dir);
    expect(noData.code).not.toBe(0);
    expect(noData.stderr).toMatch(/empty/);
    expect(existsSync(join(dir, 'mlflow.db'))).toBe(false);
  });

  it('info prints the libtorch version and devices', async () => {
    const r = await cli(['info'], tempDir());
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/libtorch\s+2\.\d+\.\d+/);
    expect(r.stdout).toMatch(/devices\s+cpu/);
  });

  it('--version prints the package version without loading libtorch; a libtorch that is not there is one error', async () => {
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    const v = await cli(['--version'], tempDir(), { LIBTORCH: '/nonexistent/libtorch' });
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toBe(pkg.version);
    const info = await cli(['info'], tempDir(), { LIBTORCH: '/nonexistent/libtorch' });
    expect(info.code).toBe(1);
    expect(info.stderr).toMatch(/^heimdall-torch: LIBTORCH=\/nonexistent\/libtorch is not a usable libtorch/);
  });
});
