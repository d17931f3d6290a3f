// heimdall-torch export: a run's checkpoint → validated ONNX → the run's model/ (MLflow onnx flavor) →
// registered model version → stage → alias.
import { Command, Option } from 'commander';
import { z } from 'zod';
import { ConfigError } from '../config.js';
import { DEFAULT_REGISTERED_MODEL, exportRun, formatOnnxReport } from '../onnx/index.js';
import { MLflowTracker } from '../tracking/index.js';
import { flagName, withFlagName } from './flags.js';

export const exportFlagsSchema = z
  .object({
    run: z.string().regex(/^[0-9a-zA-Z_-]+$/, 'must be an MLflow run id').optional(),
    best: z.string().min(1).optional(),
    mode: z.enum(['min', 'max']).default('min'),
    checkpoint: z.string().min(1).default('best'),
    register: z.string().min(1).optional(),
    stage: z.enum(['None', 'Staging', 'Production', 'Archived']).optional(),
    archiveExisting: z.boolean().default(false),
    alias: z.string().regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, _ or -').optional(),
    description: z.string().optional(),
    output: z.string().optional(),
    opset: z.number().int().min(17).max(23).optional(),
    dataDir: z.string().optional(),
    experimentName: z.string().min(1).optional(),
    json: z.boolean().default(false),
  })
  .strict();
export type ExportFlags = z.output<typeof exportFlagsSchema>;

export function resolveExportFlags(opts: Record<string, unknown>): ExportFlags {
  const r = exportFlagsSchema.safeParse(opts);
  const issues: string[] = [];
  if (!r.success) for (const i of r.error.issues) issues.push(`${i.path.length ? flagName(String(i.path[0])) : '(flags)'}: ${i.message}`);
  if (r.success) {
    const f = r.data;
    if (!f.run === !f.best) issues.push('give exactly one of --run <id> or --best <metric>');
    if (f.archiveExisting && !f.stage) issues.push('--archive-existing: needs --stage');
    if (f.best && f.checkpoint !== 'best' && f.checkpoint !== 'last') issues.push('--checkpoint <file> goes with --run, not --best');
  }
  if (issues.length) throw new ConfigError(issues, 'export options');
  const f = r.data!;
  // --stage / --alias without --register: register under the default name.
  if (!f.register && (f.stage || f.alias)) f.register = DEFAULT_REGISTERED_MODEL;
  return f;
}

export function exportCommand(): Command {
  return new Command('export')
    .description("Export a run's checkpoint to ONNX (validated in ONNX Runtime), log it as the run's model/, optionally register it")
    .option('--run <id>', 'the MLflow run to export')
    .option('--best <metric>', 'export the run with the best value of this metric (e.g. val/loss) instead')
    .addOption(new Option('--mode <mode>', 'with --best: min or max').choices(['min', 'max']).default('min'))
    .option('--checkpoint <which>', "best, last, or a local checkpoint file", 'best')
    .addOption(new Option('--register [name]', `register the model (name default ${DEFAULT_REGISTERED_MODEL})`))
    .addOption(new Option('--stage <stage>', 'move the new version to this stage').choices(['None', 'Staging', 'Production', 'Archived']))
    .option('--archive-existing', 'with --stage: archive the versions now in that stage')
    .option('--alias <alias>', 'point this alias (e.g. champion) at the new version')
    .option('--description <text>', 'registered version description')
    .option('--output <dir>', 'keep model.onnx and the MLflow model folder here (default: temporary)')
    .addOption(new Option('--opset <n>', 'ONNX opset (17 … 23)').argParser(Number))
    .option('--data-dir <dir>', "the run's data directory, when the run's recorded one is not here (target normalisation)")
    .option('--experiment-name <name>', 'with --best: the experiment (default: MLFLOW_EXPERIMENT_NAME or heimdall-localization)')
    .option('--json', 'print the result as JSON')
    .action(async (opts: Record<string, unknown>) => {
      const o = { ...opts };
      if (o.register === true) o.register = DEFAULT_REGISTERED_MODEL;
      process.exitCode = await exportCli(resolveExportFlags(o));
    });
}

export async function exportCli(flags: ExportFlags): Promise<number> {
  const out = (s: string) => process.stdout.write(`${s}\n`);
  const tracker = new MLflowTracker({ handleSignals: false, ...(flags.experimentName ? { experimentName: flags.experimentName } : {}) });
  try {
    let runId = flags.run;
    if (!runId) {
      const exp = await tracker.getExperimentByName(tracker.config.experimentName);
      const best = exp ? await tracker.getBestRun(flags.best!, { mode: flags.mode, experimentIds: [exp.experimentId] }) : null;
      if (!best) {
        throw new ConfigError([`--best: no run with metric ${flags.best} in experiment ${tracker.config.experimentName}`], 'export options');
      }
      runId = best.runId;
      if (!flags.json) out(`best run by ${flags.best} (${flags.mode}): ${runId} (${best.value})`);
    }
    const r = await exportRun(tracker, runId, {
      checkpoint: flags.checkpoint, outputDir: flags.output, opset: flags.opset, dataDir: flags.dataDir, register: flags.register,
      stage: flags.stage, archiveExisting: flags.archiveExisting, alias: flags.alias, description: flags.description,
      log: flags.json ? undefined : out,
    });
    if (flags.json) {
      out(JSON.stringify({
        runId: r.runId, checkpoint: r.checkpoint.source, modelUri: r.modelUri, modelId: r.modelId, runModelUri: r.runModelUri, registeredUri: r.registeredUri, dataFrom: r.dataFrom,
        registered: r.registered, report: { ...r.report, path: flags.output ? r.report.path : null },
      }));
      return 0;
    }
    out(formatOnnxReport(r.report) + (flags.output ? '' : '\n  (written to a temporary directory, removed: --output <dir> keeps the files)'));
    out(`model URI ${r.modelUri}`);
    if (r.modelId) out(`  (the run's MLflow logged model; also runs:/${r.runId}/model)`);
    if (r.registered) {
      const v = r.registered;
      out(`registered ${v.name} version ${v.version} (${v.status}), stage ${v.currentStage}${v.aliases.length ? `, aliases ${v.aliases.join(', ')}` : ''}`);
      out(`load it with ${r.registeredUri}${flags.stage && flags.stage !== 'None' ? ` or models:/${v.name}/${flags.stage}` : ''}`);
    }
    return 0;
  } catch (err) {
    throw withFlagName(err, EXPORT_FLAGS);
  } finally {
    await tracker.close();
  }
}

/** exportRun()'s options named by other flags. */
const EXPORT_FLAGS: Record<string, string> = { runId: '--run', outputDir: '--output' };
