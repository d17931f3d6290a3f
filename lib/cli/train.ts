// heimdall-torch train: the reference's train.py flags, on the built-in synthetic data or a data directory.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { z } from 'zod';
import { ConfigError, DEVICES, redact, earlyStoppingOptionsSchema, optimizerSchema, scheduleSchema, trainerOptionsSchema } from '../config.js';
import { HeimdallDataModule, syntheticOptionsSchema } from '../data/heimdall.js';
import { ConvNeXt } from '../model.js';
import { formatOnnxReport } from '../onnx/index.js';
import { requireOnnxRuntime } from '../onnx/runtime.js';
import { BackboneFinetuning, EarlyStopping, EMAWeightAveraging, StochasticWeightAveraging, FigureLogger, LearningRateMonitor, MLflowLogger, ModelCheckpoint, Trainer } from '../trainer/index.js';
import { flag, flagName, schemaOptions } from './flags.js';

/** The registered variants, from the native registry (`ConvNeXt.variants()`), as the CLI spells them. */
function backboneList(): string {
  return ConvNeXt.variants().map((v) => v.toUpperCase()).join(', ');
}

/** `CONVNEXT_TINY`, `convnextv2_atto`, `tiny` → the registered name (ConvNeXt.resolveVariant); else lists them. */
const backbone = z.string().transform((s, ctx) => {
  const name = ConvNeXt.resolveVariant(s);
  if (!name) {
    ctx.addIssue({ code: 'custom', message: `unknown backbone "${s}"; valid: ${backboneList()}` });
    return z.NEVER;
  }
  return name;
});

const trainer = trainerOptionsSchema.shape;
const atLeast = (min: number) => (n: number) => n >= min;

/**
 * The `train` flags: each field is (or narrows) the library option it sets, with its default — the Trainer's
 * (lib/config.ts), the data module's, EarlyStopping's — so flags, --help and the library agree by construction.
 */
export const trainFlagsSchema = z
  .object({
    backbone: flag(backbone.prefault('convnext_large'), 'model variant, any case (CONVNEXT_ATTO, convnextv2_tiny, atto; listed below)', { arg: 'name' }),
    pretrained: flag(z.string().optional(), 'safetensors weights (timm names) for the backbone', { arg: 'file' }),
    freezeBackbone: flag(z.boolean().default(false), 'train the heads only', { negate: 'train the whole network' }),
    headDropout: flag(z.number().min(0).lt(1).optional(), 'dropout of the position and uncertainty MLPs, 0 ≤ p < 1 (default: 0.3 then 0.2, as the reference)', { arg: 'p' }),
    learningRate: flag(optimizerSchema.shape.lr, 'AdamW learning rate', { arg: 'lr' }),
    batchSize: flag(syntheticOptionsSchema.shape.batchSize.refine(atLeast(2), 'must be ≥ 2 (the BatchNorm of the localization head needs two samples per batch)'), 'samples per batch', { arg: 'n' }),
    epochs: flag(trainer.maxEpochs, 'maximum epochs', { arg: 'n' }),
    weightDecay: flag(optimizerSchema.shape.weightDecay, 'AdamW weight decay (not on norms, biases, layer scale)', { arg: 'wd' }),
    patience: flag(earlyStoppingOptionsSchema.shape.patience, 'early-stopping patience on val/loss', { arg: 'n' }),
    minEpochs: flag(trainer.minEpochs, 'epochs to train before early stopping may end the training', { arg: 'n' }),
    maxTime: flag(trainer.maxTime, "stop after this training time, 'DD:HH:MM:SS' (at a batch boundary, with a checkpoint to --resume from)", { arg: 'DD:HH:MM:SS' }),
    maxSteps: flag(trainer.maxSteps, 'end training after this many optimizer steps (with --epochs, whichever comes first)', { arg: 'n' }),
    limitTrainBatches: flag(trainer.limitTrainBatches, 'batches per training epoch: a count, or a fraction in (0, 1)', { arg: 'n' }),
    overfitBatches: flag(trainer.overfitBatches, 'train on the same first n batches every epoch, unshuffled (a count or a fraction in (0, 1); 0: off)', { arg: 'n' }),
    limitValBatches: flag(trainer.limitValBatches, 'validation batches: a count, a fraction in (0, 1), or 0 for none', { arg: 'n' }),
    fastDevRun: flag(z.number().int().min(0).default(0), 'check that everything runs: n batches of each loop, no checkpoints, MLflow run or export (0: off)', { arg: 'n' }),
    logEveryNSteps: flag(trainer.logEveryNSteps, 'log training-batch metrics every N optimizer steps', { arg: 'n' }),
    unfreezeBackboneAt: flag(z.number().int().min(0).optional(), 'BackboneFinetuning: train the heads only until this epoch, then the backbone too at 0.1 × the rate, × 1.5 each epoch up to the heads\' (for --pretrained)', { arg: 'epoch' }),
    autoLr: flag(z.boolean().default(false), "run the learning-rate range test first (trainer.lrFind, Lightning's auto_lr_find) and train at its suggestion instead of --learning-rate", { negate: 'train at --learning-rate' }),
    swaLrs: flag(z.number().positive().optional(), 'stochastic weight averaging from 80% of the epochs, the rate annealed to this value; the model ends as the average', { arg: 'lr' }),
    ema: flag(z.number().gt(0).lt(1).optional(), 'keep an exponential moving average of the weights with this decay (e.g. 0.999); validation, checkpoints and the export use it', { arg: 'decay' }),
    deterministic: flag(z.boolean().default(false), 'deterministic algorithms only: repeatable runs, slower on CUDA', { negate: 'libtorch\'s fastest algorithms' }),
    valCheckInterval: flag(trainer.valCheckInterval, 'validate every N training batches, or at this fraction of an epoch in (0, 1); 1: at epoch ends', { arg: 'x' }),
    modelSummary: flag(trainer.enableModelSummary, 'print the layer table when training starts', { negate: 'no layer table' }),
    outputDir: flag(trainer.defaultRootDir, 'checkpoints and exports', { arg: 'dir' }),
    runName: flag(z.string().min(1).optional(), 'MLflow run name', { arg: 'name', defaultText: 'rf-localization-<timestamp>' }),
    experimentName: flag(z.string().min(1).optional(), 'MLflow experiment (default: MLFLOW_EXPERIMENT_NAME or heimdall-localization)', { arg: 'name' }),
    dataDir: flag(z.string().optional(), 'a directory of <id>_iq.npy + <id>_label.npy', { arg: 'dir', defaultText: 'the built-in synthetic data' }),
    samples: flag(syntheticOptionsSchema.shape.samples.refine(atLeast(10), 'must be ≥ 10'), 'synthetic samples to generate', { arg: 'n' }),
    device: flag(trainer.device, DEVICES, { arg: 'device' }),
    devices: flag(trainer.devices, 'data-parallel processes per node (Gloo on CPU, NCCL on CUDA): a number or auto; under torchrun its variables decide', { arg: 'n' }),
    numNodes: flag(trainer.numNodes, 'nodes, each running this command with NODE_RANK, MASTER_ADDR and MASTER_PORT set', { arg: 'n' }),
    syncBatchnorm: flag(trainer.syncBatchNorm, 'data-parallel: normalise the localization head with the BatchNorm statistics of all ranks', { negate: 'per-rank BatchNorm statistics' }),
    precision: flag(trainer.precision, 'training precision', { arg: 'p' }),
    seed: flag(trainer.seed, 'seed for data, initialisation and shuffling', { arg: 'n' }),
    resume: flag(z.string().optional(), 'continue a training from its checkpoint (same MLflow run)', { arg: 'checkpoint' }),
    warmupSteps: flag(scheduleSchema.shape.warmupSteps, 'linear warmup steps before the cosine decay', { arg: 'n' }),
    gradClipNorm: flag(trainer.gradClipNorm, 'clip gradients to this norm (0: off)', { arg: 'x' }),
    threads: flag(trainer.threads, 'CPU threads for libtorch', { arg: 'n' }),
    progress: flag(z.boolean().optional(), 'show a progress bar (default: when stdout is a terminal and CI is unset)', { negate: 'no progress bar' }),
    logSystemMetrics: flag(trainer.logSystemMetrics, 'log system metrics (CPU, memory, disk, network, GPU) to the MLflow run every MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL s (10)', { negate: 'no system metrics' }),
    figures: flag(z.boolean().default(true), 'draw the test map, error CDF and training curves into <output-dir>/figures and the MLflow run (images tab)', { negate: 'no figures' }),
    exportOnnx: flag(z.boolean().default(true), 'export the best checkpoint to <output-dir>/model.onnx, validated in ONNX Runtime, logged to the run', { negate: 'skip the ONNX export' }),
  })
  .strict();
export type TrainFlags = z.output<typeof trainFlagsSchema>;

export function trainCommand(): Command {
  const cmd = new Command('train')
    .description('Train a ConvNeXt to locate transmitters (synthetic WebSDR data by default), tracked in MLflow')
    .option('--config <file>', 'JSON file with any of these options (camelCase); flags given on the command line win');
  for (const option of schemaOptions(trainFlagsSchema)) cmd.addOption(option);
  return cmd
    .addHelpText('after', () => {
      try {
        return `\nBackbones: ${backboneList()}`;
      } catch (err) {
        return `\nBackbones: (the native addon does not load: ${(err as Error).message.split('\n')[0]})`;
      }
    })
    .action(async (_opts, c: Command) => {
      const flags = resolveTrainFlags(c);
      process.exitCode = await train(flags);
    });
}

/** Flags from --config (if any), then the command line (explicit flags win), validated as one. */
export function resolveTrainFlags(cmd: Command): TrainFlags {
  const opts = cmd.opts<Record<string, unknown>>();
  let merged: Record<string, unknown> = {};
  const issues: string[] = [];
  if (typeof opts.config === 'string') {
    try {
      const parsed = JSON.parse(readFileSync(opts.config, 'utf8')) as unknown;
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) issues.push(`--config ${opts.config}: must hold a JSON object`);
      else merged = { ...(parsed as Record<string, unknown>) };
    } catch (err) {
      issues.push(`--config ${opts.config}: ${(err as Error).message}`);
    }
  }
  for (const [k, v] of Object.entries(opts)) {
    if (k === 'config') continue;
    const source = cmd.getOptionValueSource(k);
    if (source === 'cli' || source === 'env' || !(k in merged)) {
      if (v !== undefined) merged[k] = v;
    }
  }
  const r = trainFlagsSchema.safeParse(merged);
  if (!r.success) {
    for (const i of r.error.issues) {
      const at = i.path.length ? flagName(String(i.path[0])) : '(flags)';
      issues.push(i.code === 'unrecognized_keys' ? `--config: unknown option(s) ${(i as { keys?: string[] }).keys?.join(', ')}` : `${at}: ${i.message}`);
    }
  }
  if (r.success && r.data.dataDir && !(existsSync(r.data.dataDir) && statSync(r.data.dataDir).isDirectory())) {
    issues.push(`--data-dir: ${r.data.dataDir} is not a directory`);
  }
  if (r.success && r.data.resume && !existsSync(r.data.resume)) issues.push(`--resume: ${r.data.resume} does not exist`);
  if (r.success && r.data.pretrained && !existsSync(r.data.pretrained)) issues.push(`--pretrained: ${r.data.pretrained} does not exist`);
  if (issues.length) throw new ConfigError(issues, 'train options');
  return r.data!;
}

/**
 * The run's page in MLflow's UI, in the model-training view: MLflow 3.17's UI opens experiments in the view its
 * "GenAI | Model training" switch holds (default GenAI, remembered per browser) and reads `?workflowType=` first;
 * the `mlflow.experimentKind` experiment tag is what UIs without the switch read.
 */
export function runPageUrl(trackingUri: string, experimentId: string, runId: string): string {
  const page = `#/experiments/${experimentId}/runs/${runId}?workflowType=machine_learning`;
  if (/^https?:\/\//i.test(trackingUri)) {
    const u = new URL(trackingUri);
    return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}/${page}`;  // no user info
  }
  return `http://127.0.0.1:5000/${page} (after \`mlflow ui --backend-store-uri ${redact(trackingUri)}\`)`;
}

export async function train(flags: TrainFlags): Promise<number> {
  const t0 = Date.now();
  // Fail before training, not after it: the export at the end validates in ONNX Runtime (an optional peer dependency).
  if (flags.exportOnnx) requireOnnxRuntime('heimdall-torch train (it ends with the ONNX export, checked in ONNX Runtime)', 'pass --no-export-onnx');
  // Data-parallel: the other ranks train silently; rank 0 (RANK unset or 0) reports.
  const quiet = Number(process.env.RANK ?? 0) > 0;
  const log = (s: string) => {
    if (!quiet) process.stdout.write(`${s}\n`);
  };
  // The data module itself goes to trainer.fit: its setup() computes every sample's features on all cores,
  // then gives the reference split (seeded with --seed).
  const data = flags.dataDir
    ? await HeimdallDataModule.fromDirectory(resolve(flags.dataDir), { batchSize: flags.batchSize, splitSeed: flags.seed })
    : HeimdallDataModule.synthetic({ samples: flags.samples, seed: flags.seed, batchSize: flags.batchSize });
  const inChans = data.inputShape[0]!;
  const model = ConvNeXt.localization(flags.backbone, { inChans, pretrained: flags.pretrained, freezeBackbone: flags.freezeBackbone,
    headDropout: flags.headDropout, seed: flags.seed });
  const runName = flags.runName ?? `rf-localization-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}`;
  let learningRate = flags.learningRate;
  let autoLr: Record<string, number | boolean> | null = null;
  if (flags.autoLr) {
    if (flags.devices !== 1 || flags.numNodes !== 1 || Number(process.env.WORLD_SIZE ?? 1) > 1) {
      throw new ConfigError(['--auto-lr runs the range test in one process: find the rate with --devices 1, then pass it as --learning-rate']);
    }
    if (flags.resume) throw new ConfigError(['--auto-lr and --resume: a resumed training keeps its rate; drop --auto-lr']);
    // The same optimizer, precision and data as the training; weights restored afterwards, nothing logged.
    const probe = new Trainer({ device: flags.device, precision: flags.precision, seed: flags.seed, threads: flags.threads,
      optimizer: { name: 'adamw', lr: flags.learningRate, weightDecay: flags.weightDecay }, enableProgressBar: false, enableModelSummary: false, handleSignals: false });
    const found = await probe.lrFind(model, data);
    if (found.suggestion === undefined) {
      log(`heimdall-torch: --auto-lr: the range test gave no suggestion (${found.lrs.length} usable steps); training at --learning-rate ${flags.learningRate}`);
    } else {
      learningRate = found.suggestion;
      log(`heimdall-torch: --auto-lr: learning rate ${learningRate.toExponential(2)} (the valley of the smoothed loss over ${found.lrs.length} steps from ${found.lrs[0]!.toExponential(1)} to ${found.lrs.at(-1)!.toExponential(1)}${found.diverged ? ', stopped where it diverged' : ''})`);
    }
    autoLr = { suggested: found.suggestion ?? NaN, steps: found.lrs.length, diverged: found.diverged, used: learningRate };
  }
  const checkpoint = new ModelCheckpoint({ monitor: 'val/loss', mode: 'min', saveTopK: 3, saveLast: true });
  const figures = flags.figures ? new FigureLogger() : null;
  const logger = new MLflowLogger({
    runName,
    trackerOptions: flags.experimentName ? { experimentName: flags.experimentName } : {},
    params: { cli: { backbone: flags.backbone, data_dir: flags.dataDir ?? 'synthetic', samples: data.size }, ...(autoLr ? { auto_lr: autoLr } : {}) },
  });
  const trainer = new Trainer({
    maxEpochs: flags.epochs,
    device: flags.device,
    devices: flags.devices,
    numNodes: flags.numNodes,
    syncBatchNorm: flags.syncBatchnorm,
    precision: flags.precision,
    optimizer: { name: 'adamw', lr: learningRate, weightDecay: flags.weightDecay },
    schedule: { name: 'cosine', warmupSteps: flags.warmupSteps },
    gradClipNorm: flags.gradClipNorm,
    seed: flags.seed,
    threads: flags.threads,
    defaultRootDir: flags.outputDir,
    enableProgressBar: flags.progress,
    logSystemMetrics: flags.logSystemMetrics,
    minEpochs: flags.minEpochs,
    ...(flags.maxTime !== undefined ? { maxTime: { seconds: flags.maxTime / 1000 } } : {}),
    logEveryNSteps: flags.logEveryNSteps,
    valCheckInterval: flags.valCheckInterval,
    ...(flags.deterministic ? { deterministic: true } : {}),
    fastDevRun: flags.fastDevRun || false,
    ...(flags.maxSteps !== undefined ? { maxSteps: flags.maxSteps } : {}),
    ...(flags.limitTrainBatches !== undefined ? { limitTrainBatches: flags.limitTrainBatches } : {}),
    ...(flags.limitValBatches !== undefined ? { limitValBatches: flags.limitValBatches } : {}),
    overfitBatches: flags.overfitBatches,
    enableModelSummary: flags.modelSummary,
    callbacks: [checkpoint, new EarlyStopping({ monitor: 'val/loss', patience: flags.patience }), new LearningRateMonitor(), ...(figures ? [figures] : []),
      ...(flags.ema !== undefined ? [new EMAWeightAveraging({ decay: flags.ema })] : []),
      ...(flags.swaLrs !== undefined ? [new StochasticWeightAveraging({ swaLrs: flags.swaLrs })] : []),
      ...(flags.unfreezeBackboneAt !== undefined ? [new BackboneFinetuning({ unfreezeBackboneAtEpoch: flags.unfreezeBackboneAt })] : [])],
    logFigures: flags.figures,
    logger,
  });
  log(`heimdall-torch: ${flags.backbone} (${(model.numParameters() / 1e6).toFixed(1)}M parameters) on ${data.describe()}, ${flags.epochs} epochs max`);
  try {
    const history = await trainer.fit(model, data, { ckptPath: flags.resume });
    for (const e of history.epochs) {
      log(`epoch ${e.epoch}: train/loss ${e.train['train/loss']?.toFixed(4)}  val/loss ${e.val?.['val/loss']?.toFixed(4)}  val/position_error_m ${e.val?.['val/position_error_m']?.toFixed(0)}  (${e.samplesPerSec.toFixed(0)} samples/s)`);
    }
    const trainSeconds = history.epochs.reduce((a, e) => a + e.seconds, 0);
    const trainSamples = history.epochs.reduce((a, e) => a + e.samplesPerSec * e.seconds, 0);
    if (trainSeconds > 0) {
      log(`training: ${(trainSamples / trainSeconds).toFixed(0)} samples/s (${trainSamples.toFixed(0)} samples in ${trainSeconds.toFixed(1)} s of ` +
        `training epochs; fit ${history.seconds.toFixed(1)} s with validation, checkpoints and logging)`);
    }
    if ((history.reason === 'max_time' || history.reason === 'max_steps') && history.resumeCheckpoint) {
      log(`${history.reason === 'max_time' ? 'time limit' : 'max steps'} reached inside epoch ${trainer.currentEpoch}: checkpoint ${history.resumeCheckpoint}; continue with --resume ${history.resumeCheckpoint} and a higher limit`);
    }
    if (history.reason === 'interrupted') {
      log(`interrupted: checkpoint ${history.interruptCheckpoint}; MLflow run ${logger.runId} ended KILLED. Resume with --resume ${history.interruptCheckpoint}`);
      await logger.close();
      return 130;
    }
    if (flags.fastDevRun) {
      const test = await trainer.test();
      log(`fastDevRun: test/loss ${test['test/loss']?.toFixed(4)} on ${flags.fastDevRun} batch(es); nothing was saved or logged`);
      await logger.close();
      return 0;
    }
    const test = await trainer.test({ ckptPath: checkpoint.bestModelPath ? 'best' : undefined });
    const splits = await data.setup();
    const baseline = data.centroidBaseline(splits.train, splits.test);
    const ours = test['test/position_error_m']!;
    log('');
    log(`test split (${baseline.count} samples), best checkpoint ${checkpoint.bestModelPath ?? '(none)'}:`);
    log(`  position error  mean ${ours.toFixed(0)} m  median ${test['test/position_error_median_m']?.toFixed(0)} m  p68 ${test['test/position_error_p68_m']?.toFixed(0)} m  p95 ${test['test/position_error_p95_m']?.toFixed(0)} m`);
    log(`  centroid baseline  mean ${baseline.mean.toFixed(0)} m  median ${baseline.median.toFixed(0)} m  p68 ${baseline.p68.toFixed(0)} m`);
    log(`  improvement over the baseline: ${(baseline.mean / ours).toFixed(2)}× (mean error)`);
    if (figures?.written.length) {
      log(`figures: ${figures.dirFor(trainer)}/{${[...new Set(figures.written.map((f) => f.name))].join(',')}}.{png,svg}`);
      log(`  in MLflow: run ${logger.runId}, Artifacts → figures/ and images/ (shown with the run's charts: ${figures.written.map((f) => f.key).join(', ')})`);
    }
    if (flags.exportOnnx && trainer.isGlobalZero) {
      const onnxPath = join(resolve(flags.outputDir), 'model.onnx');
      // The best checkpoint, validated in ONNX Runtime, logged in MLflow's onnx flavor as the run's MLflow 3 logged
      // model `model` (the run's `model/` on MLflow 2.x stores): mlflow.pyfunc.load_model('models:/<model_id>') and
      // mlflow.onnx.load_model('runs:/<id>/model') load it.
      const report = await trainer.exportOnnx(onnxPath);
      log(formatOnnxReport(report));
      if (report.modelUri) log(`  MLflow model ${report.modelUri}${report.modelId ? ` (the run's logged model; also ${report.runModelUri})` : ''}`);
    }
    log(`MLflow run ${logger.runId} (${history.reason === 'stopped' ? 'early-stopped' : history.reason === 'max_time' ? 'time limit' : history.reason === 'max_steps' ? 'max steps' : 'max epochs'}, ${history.epochs.length} epochs) in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    const eid = logger.tracker.experimentId;
    if (eid && logger.runId) log(`  in MLflow's UI: ${runPageUrl(logger.tracker.config.trackingUri, eid, logger.runId)}`);
    await logger.close();
    return 0;
  } catch (err) {
    await logger.close().catch(() => undefined);
    throw err;
  }
}
