// heimdall-torch predict: a registered / logged / local ONNX model on a data directory of <id>_iq.npy files
// (features computed natively as in training); prints or writes positions with σ, and the error vs the labels.
import { writeFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { z } from 'zod';
import { ConfigError } from '../config.js';
import { loadModel, type DirectoryPrediction } from '../inference/index.js';
import { flagName, withFlagName } from './flags.js';

export const predictFlagsSchema = z
  .object({
    model: z.string().min(1, 'give a model URI or path'),
    dataDir: z.string().min(1, 'give a data directory'),
    output: z.string().regex(/\.(json|csv)$/i, 'must end in .json or .csv').optional(),
    batchSize: z.number().int().min(1).max(4096).default(32),
    json: z.boolean().default(false),
    limit: z.number().int().min(0).default(10),
  })
  .strict();
export type PredictFlags = z.output<typeof predictFlagsSchema>;

export function predictCommand(): Command {
  return new Command('predict')
    .description('Locate transmitters with an exported model: models:/<name>/<stage|version>, models:/<name>@<alias>, runs:/<id>/model, or a path')
    .requiredOption('--model <uri>', 'model URI or path (an .onnx file or an MLflow model directory)')
    .requiredOption('--data-dir <dir>', 'a directory of <id>_iq.npy (+ <id>_label.npy, manifest.json)')
    .option('--output <file>', 'write the predictions to a .json or .csv file')
    .addOption(new Option('--batch-size <n>', 'samples per ONNX Runtime call').argParser(Number).default(32))
    .addOption(new Option('--limit <n>', 'predictions printed (0: none)').argParser(Number).default(10))
    .option('--json', 'print everything as JSON')
    .action(async (opts: Record<string, unknown>) => {
      const r = predictFlagsSchema.safeParse(opts);
      if (!r.success) {
        throw new ConfigError(r.error.issues.map((i) => `${flagName(String(i.path[0] ?? ''))}: ${i.message}`), 'predict options');
      }
      process.exitCode = await predictCli(r.data);
    });
}

const fmt = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : '-');

export function predictionsCsv(p: DirectoryPrediction): string {
  const rows = ['id,lat,lon,sigma_lat_m,sigma_lon_m,label_lat,label_lon,error_m'];
  for (const s of p.samples) {
    rows.push([s.id.includes(',') ? JSON.stringify(s.id) : s.id, s.lat, s.lon, s.sigmaLatM, s.sigmaLonM, s.label?.lat ?? '', s.label?.lon ?? '', s.errorM ?? ''].join(','));
  }
  return rows.join('\n') + '\n';
}

export async function predictCli(flags: PredictFlags): Promise<number> {
  const out = (s: string) => process.stdout.write(`${s}\n`);
  const model = await loadModel(flags.model);
  try {
    const t0 = performance.now();
    const p = await model.predictDirectory(flags.dataDir, { batchSize: flags.batchSize }).catch((err: unknown) => {
      throw withFlagName(err, { dir: '--data-dir' });
    });
    const seconds = (performance.now() - t0) / 1000;
    const doc = {
      model: { uri: model.uri, source: model.source, variant: model.metadata.variant, registered: model.registered, runId: model.runId },
      dataDir: p.dir,
      count: p.samples.length,
      error: p.error,
      samples: p.samples,
    };
    if (flags.output) writeFileSync(flags.output, /\.csv$/i.test(flags.output) ? predictionsCsv(p) : JSON.stringify(doc, null, 2) + '\n');
    if (flags.json) {
      out(JSON.stringify(doc));
      return 0;
    }
    const reg = model.registered ? ` = ${model.registered.name} v${model.registered.version} (${model.registered.stage})` : '';
    out(`model ${model.uri}${reg}: ${model.metadata.variant}, ${model.metadata.inChans} receivers`);
    out(`${p.samples.length} samples from ${p.dir} in ${seconds.toFixed(2)} s`);
    const shown = p.samples.slice(0, flags.limit);
    if (shown.length) {
      out('id                    lat         lon          σlat m   σlon m   error m');
      for (const s of shown) {
        out(`${s.id.padEnd(20).slice(0, 20)}  ${fmt(s.lat, 5).padStart(10)}  ${fmt(s.lon, 5).padStart(10)}  ${fmt(s.sigmaLatM, 0).padStart(7)}  ${fmt(s.sigmaLonM, 0).padStart(7)}  ${s.errorM === null ? '-' : fmt(s.errorM, 0).padStart(8)}`);
      }
      if (p.samples.length > shown.length) out(`… ${p.samples.length - shown.length} more${flags.output ? ` in ${flags.output}` : ' (--output to write all)'}`);
    }
    if (p.error) {
      const e = p.error;
      out(`position error (${e.count} labelled): mean ${fmt(e.mean, 0)} m  median ${fmt(e.median, 0)} m  p68 ${fmt(e.p68, 0)} m  p95 ${fmt(e.p95, 0)} m`);
    }
    if (flags.output) out(`wrote ${flags.output}`);
    return 0;
  } finally {
    await model.close();
  }
}
