// heimdall-torch: train | export | predict | info | runs best
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { redact } from './config.js';
import { HeimdallError, type HeimdallErrorCode } from './errors.js';
import { ConvNeXt } from './model.js';
import { packageRoot, torchInfo } from './native.js';
import { MLflowTracker } from './tracking/index.js';
import { trainCommand } from './cli/train.js';
import { exportCommand } from './cli/export.js';
import { predictCommand } from './cli/predict.js';

export { resolveTrainFlags, train, trainFlagsSchema, type TrainFlags } from './cli/train.js';
export { exportCli, exportFlagsSchema, resolveExportFlags, type ExportFlags } from './cli/export.js';
export { predictCli, predictFlagsSchema, predictionsCsv, type PredictFlags } from './cli/predict.js';

function infoCommand(): Command {
  return new Command('info').description('libtorch version, CUDA, devices, threads').action(() => {
    const i = torchInfo();
    const devices = i.cudaDevices.map((d) => (typeof d === 'string' ? d : `cuda:${d.index} ${d.name}`)).join(', ');
    process.stdout.write(
      [
        `heimdall-torch ${i.heimdallTorch}`,
        `libtorch       ${i.libtorch} (${i.cudaBuild ? `CUDA build, runtime ${i.cudaRuntime}` : 'CPU-only build'})`,
        `CUDA           ${i.cudaAvailable ? `${i.cudaDeviceCount} device(s)` : 'not available'}`,
        `cuDNN          ${i.cudnn ?? '-'}`,
        `devices        ${devices}`,
        `threads        ${i.threads} intra-op, ${i.interopThreads} inter-op`,
        `variants       ${ConvNeXt.variants().join(', ')}`,
      ].join('\n') + '\n',
    );
  });
}

function runsCommand(): Command {
  const runs = new Command('runs').description('query MLflow runs');
  runs
    .command('best')
    .description("the best run's id, metric value and params")
    .option('--metric <key>', 'metric to rank by', 'val/loss')
    .addOption(new Option('--mode <mode>', 'min or max').choices(['min', 'max']).default('min'))
    .option('--experiment-name <name>', 'experiment (default: MLFLOW_EXPERIMENT_NAME or heimdall-localization)')
    .option('--json', 'print JSON')
    .action(async (o: { metric: string; mode: 'min' | 'max'; experimentName?: string; json?: boolean }) => {
      const tracker = new MLflowTracker({ handleSignals: false, ...(o.experimentName ? { experimentName: o.experimentName } : {}) });
      try {
        const exp = await tracker.getExperimentByName(tracker.config.experimentName);
        const best = exp ? await tracker.getBestRun(o.metric, { mode: o.mode, experimentIds: [exp.experimentId] }) : null;
        if (!best) {
          process.stdout.write(`no run with metric ${o.metric} in experiment ${tracker.config.experimentName}\n`);
          process.exitCode = 1;
          return;
        }
        if (o.json) process.stdout.write(`${JSON.stringify(best)}\n`);
        else {
          process.stdout.write(`run ${best.runId}\n${best.metric} = ${best.value}\n`);
          for (const [k, v] of Object.entries(best.params).sort()) process.stdout.write(`  ${k} = ${v}\n`);
        }
      } finally {
        await tracker.close();
      }
    });
  return runs;
}

export function program(): Command {
  // The version comes from package.json, so that `--version` works even where libtorch cannot be loaded.
  const { version } = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string };
  return new Command('heimdall-torch')
    .description('Train and track ConvNeXt models from Node.js (libtorch + MLflow)')
    .version(version, '-V, --version', 'the package version (`info` also reports libtorch and CUDA)')
    .showHelpAfterError()
    .addCommand(trainCommand())
    .addCommand(exportCommand())
    .addCommand(predictCommand())
    .addCommand(infoCommand())
    .addCommand(runsCommand());
}

export async function main(argv = process.argv): Promise<void> {
  try {
    await program().parseAsync(argv);
  } catch (err) {
    const e = err as Error;
    process.stderr.write(`heimdall-torch: ${redact(e.message).replace(/^heimdall-torch:\s*/, '')}\n`);
    process.exitCode = exitCode(err);
  }
}

/** Exit 2 for what the user gave wrong (options, flags, arguments), 1 for everything else. */
const USAGE_CODES: ReadonlySet<HeimdallErrorCode> = new Set<HeimdallErrorCode>(['HEIMDALL_INVALID_CONFIG', 'HEIMDALL_INVALID_ARGUMENT']);

export function exitCode(err: unknown): number {
  return err instanceof HeimdallError && USAGE_CODES.has(err.code) ? 2 : 1;
}
