// heimdall-torch train: the reference's train.py flags, on the built-in synthetic data or a data directory.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { z } from 'zod';
import { ConfigError } from '../config.js';
import { HeimdallDataModule } from '../data/heimdall.js';
import { ConvNeXt } from '../model.js';
import { formatOnnxReport } from '../onnx/index.js';
import { EarlyStopping, LearningRateMonitor, MLflowLogger, ModelCheckpoint, Trainer } from '../trainer/index.js';

const VARIANTS = ['atto', 'femto', 'pico', 'nano', 'tiny', 'small', 'base', 'large', 'xlarge'];

/** `CONVNEXT_TINY`, `convnext_tiny`, `tiny` → `convnext_tiny`; anything else lists the valid names. */
const backbone = z.string().transform((s, ctx) => {
  const key = s.toLowerCase().replace(/^convnext_/, '');
  if (!VARIANTS.includes(key)) {
    ctx.addIssue({ code: 'custom', message: `unknown backbone "${s}"; valid: ${VARIANTS.map((v) => `CONVNEXT_${v.toUpperCase()}`).join(', ')}` });
    return z.NEVER;
  }
  return `convnext_${key}`;
});

export const trainFlagsSchema = z
  .object({
    backbone: backbone.default('CONVNEXT_LARGE'),
    pretrained: z.string().optional(),
    freezeBackbone: z.boolean().default(false),
    headDropout: z.number().min(0).lt(1).optional(),
    learningRate: z.number().positive().default(1e-3),
    batchSize: z.number().int().min(2).default(32),
    epochs: z.number().int().min(1).default(100),
    weightDecay: z.number().min(0).default(1e-5),
    patience: z.number().int().min(0).default(5),
    outputDir: z.string().default('./outputs'),
    runName: z.string().min(1).optional(),
    experimentName: z.string().min(1).optional(),
    dataDir: z.string().optional(),
    samples: z.number().int().min(10).default(2000),
    device: z.string().regex(/^(auto|cpu|cuda(:\d+)?)$/, 'must be auto, cpu, cuda or cuda:N').default('auto'),
    precision: z.enum(['32', 'bf16-mixed', '16-mixed']).default('32'),
    seed: z.number().int().min(0).default(42),
    resume: z.string().optional(),
    warmupSteps: z.number().int().min(0).default(0),
    gradClipNorm: z.number().min(0).default(0),
    threads: z.number().int().min(1).optional(),
    progress: z.boolean().optional(),
    exportOnnx: z.boolean().default(true),
  })
  .strict();
export type TrainFlags = z.output<typeof trainFlagsSchema>;

const num = (v: string) => Number(v);

export function trainCommand(): Command {
  return new Command('train')
    .description('Train a ConvNeXt to locate transmitters (synthetic WebSDR data by default), tracked in MLflow')
    .addOption(new Option('--backbone <name>', 'ConvNeXt variant (CONVNEXT_ATTO … CONVNEXT_XLARGE, any case)').default('CONVNEXT_LARGE'))
    .option('--pretrained <file>', 'safetensors weights (timm names) for the backbone')
    .option('--freeze-backbone', 'train the heads only (default: off)')
    .option('--no-freeze-backbone', 'train the whole network')
    .addOption(new Option('--learning-rate <lr>', 'AdamW learning rate').argParser(num).default(1e-3))
    .addOption(new Option('--batch-size <n>', 'samples per batch').argParser(num).default(32))
    .addOption(new Option('--epochs <n>', 'maximum epochs').argParser(num).default(100))
    .addOption(new Option('--weight-decay <wd>', 'AdamW weight decay (not on norms, biases, layer scale)').argParser(num).default(1e-5))
    .addOption(new Option('--patience <n>', 'early-stopping patience on val/loss').argParser(num).default(5))
    .option('--config <file>', 'JSON file with any of these options (camelCase); flags given on the command line win')
    .addOption(new Option('--output-dir <dir>', 'checkpoints and exports').default('./outputs'))
    .addOption(new Option('--run-name <name>', 'MLflow run name').default(undefined, 'rf-localization-<timestamp>'))
    .option('--experiment-name <name>', 'MLflow experiment (default: MLFLOW_EXPERIMENT_NAME or heimdall-localization)')
    .addOption(new Option('--data-dir <dir>', 'a directory of <id>_iq.npy + <id>_label.npy').default(undefined, 'the built-in synthetic data'))
    .addOption(new Option('--samples <n>', 'synthetic samples to generate').argParser(num).default(2000))
    .addOption(new Option('--device <device>', 'auto, cpu, cuda or cuda:N').default('auto'))
    .addOption(new Option('--precision <p>', 'training precision').choices(['32', 'bf16-mixed', '16-mixed']).default('32'))
    .addOption(new Option('--seed <n>', 'seed for data, initialisation and shuffling').argParser(num).default(42))
    .option('--resume <checkpoint>', 'continue a training from its checkpoint (same MLflow run)')
    .addOption(new Option('--warmup-steps <n>', 'linear warmup steps before the cosine decay').argParser(num).default(0))
    .addOption(new Option('--head-dropout <p>', 'dropout of the position and uncertainty MLPs, 0 ≤ p < 1 (default: 0.3 then 0.2, as the reference)').argParser(num))
    .addOption(new Option('--grad-clip-norm <x>', 'clip gradients to this norm (0: off)').argParser(num).default(0))
    .addOption(new Option('--threads <n>', 'CPU threads for libtorch').argParser(num))
    .option('--progress', 'show a progress bar (default: when stdout is a terminal and CI is unset)')
    .option('--no-progress', 'no progress bar')
    .option('--export-onnx', 'export the best checkpoint to <output-dir>/model.onnx, validated in ONNX Runtime, logged to the run (default: on)')
    .option('--no-export-onnx', 'skip the ONNX export')
    .action(async (_opts, cmd: Command) => {
      const flags = resolveTrainFlags(cmd);
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
      const flag = i.path.length ? `--${String(i.path[0]).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}` : '(flags)';
      issues.push(i.code === 'unrecognized_keys' ? `--config: unknown option(s) ${(i as { keys?: string[] }).keys?.join(', ')}` : `${flag}: ${i.message}`);
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

export async function train(flags: TrainFlags): Promise<number> {
  const t0 = Date.now();
  const log = (s: string) => process.stdout.write(`${s}\n`);
  // The data module itself goes to trainer.fit: its setup() computes every sample's features on all cores,
  // then gives the reference split (seeded with --seed).
  const data = flags.dataDir
    ? await HeimdallDataModule.fromDirectory(resolve(flags.dataDir), { batchSize: flags.batchSize, splitSeed: flags.seed })
    : HeimdallDataModule.synthetic({ samples: flags.samples, seed: flags.seed, batchSize: flags.batchSize });
  const inChans = data.inputShape[0]!;
  const model = ConvNeXt.localization(flags.backbone, { inChans, pretrained: flags.pretrained, freezeBackbone: flags.freezeBackbone,
    headDropout: flags.headDropout, seed: flags.seed });
  const runName = flags.runName ?? `rf-localization-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}`;
  const checkpoint = new ModelCheckpoint({ monitor: 'val/loss', mode: 'min', saveTopK: 3, saveLast: true });
  const logger = new MLflowLogger({
    runName,
    trackerOptions: flags.experimentName ? { experimentName: flags.experimentName } : {},
    params: { cli: { backbone: flags.backbone, data_dir: flags.dataDir ?? 'synthetic', samples: data.size } },
  });
  const trainer = new Trainer({
    maxEpochs: flags.epochs,
    device: flags.device,
    precision: flags.precision,
    optimizer: { name: 'adamw', lr: flags.learningRate, weightDecay: flags.weightDecay },
    schedule: { name: 'cosine', warmupSteps: flags.warmupSteps, minLr: 1e-6 },
    gradClipNorm: flags.gradClipNorm,
    seed: flags.seed,
    threads: flags.threads,
    defaultRootDir: flags.outputDir,
    enableProgressBar: flags.progress,
    callbacks: [checkpoint, new EarlyStopping({ monitor: 'val/loss', patience: flags.patience }), new LearningRateMonitor()],
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
    if (history.reason === 'interrupted') {
      log(`interrupted: checkpoint ${history.interruptCheckpoint}; MLflow run ${logger.runId} ended KILLED. Resume with --resume ${history.interruptCheckpoint}`);
      await logger.close();
      return 130;
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
    if (flags.exportOnnx) {
      const onnxPath = join(resolve(flags.outputDir), 'model.onnx');
      // The best checkpoint, validated in ONNX Runtime, logged as the run's `model/` in MLflow's onnx flavor:
      // mlflow.onnx.load_model('runs:/<id>/model') loads it.
      const report = await trainer.exportOnnx(onnxPath);
      log(formatOnnxReport(report));
    }
    log(`MLflow run ${logger.runId} (${history.reason === 'stopped' ? 'early-stopped' : 'max epochs'}, ${history.epochs.length} epochs) in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    await logger.close();
    return 0;
  } catch (err) {
    await logger.close().catch(() => undefined);
    throw err;
  }
}
