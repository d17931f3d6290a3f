// ModelSummary: Lightning's layer table, printed when fit starts — each top-level module (to `maxDepth`) with its
// kind, parameter count and output size for the data module's input, then trainable / frozen / total parameters
// and their size in megabytes. Counts come from the native model's state dict; the output sizes follow from the
// ConvNeXt architecture (4×4 stride-4 stem, 2×2 stride-2 downsampling before stages 1–3, pooled head).
import { z } from 'zod';
import { parseOptions } from '../../config.js';
import type { ConvNeXt } from '../../model.js';
import { Callback, type TrainerView } from '../callback.js';

export const modelSummaryOptionsSchema = z
  .object({
    /** Depth of the module names listed: 1 (`stages.0`), 2 (`stages.0.downsample`, `stages.0.blocks`), … */
    maxDepth: z.number().int().min(1).default(1),
  })
  .strict();
export type ModelSummaryOptions = z.input<typeof modelSummaryOptionsSchema>;

export interface SummaryRow {
  name: string;
  kind: string;
  params: number;
  /** Output size for one batch (`B` first), when it follows from the input shape. */
  outSize?: (number | 'B')[];
}

export interface Summary {
  rows: SummaryRow[];
  trainable: number;
  nonTrainable: number;
  total: number;
  /** float32 bytes of all parameters, in MB (1e6 bytes). */
  sizeMb: number;
}

// The running statistics of BatchNorm are buffers, not parameters.
const BUFFER = /\.(running_mean|running_var|num_batches_tracked)$/;

/** The summary of `model` for inputs of shape `[C, H, W]` (optional), grouped to `maxDepth` name segments. */
export function summarize(model: ConvNeXt, inputShape?: readonly number[], maxDepth = 1): Summary {
  const shapes = model.native.stateDictShapes();
  const groups = new Map<string, { params: number; names: string[] }>();
  let total = 0;
  for (const [name, shape] of Object.entries(shapes)) {
    if (BUFFER.test(name)) continue;
    const n = shape.reduce((a, b) => a * b, 1);
    total += n;
    const parts = name.split('.');
    // `stages.0` is one module at depth 1 (a ModuleList index belongs to its list); `head.norm` too.
    const depth = parts[0] === 'stages' || parts[0] === 'head' ? maxDepth + 1 : maxDepth;
    const key = parts.slice(0, Math.min(depth, parts.length - 1)).join('.');
    const g = groups.get(key) ?? { params: 0, names: [] };
    g.params += n;
    g.names.push(name);
    groups.set(key, g);
  }
  const channels = (stage: number): number | undefined => {
    const w = stage === 0 ? shapes['stem.0.weight'] : shapes[`stages.${stage}.downsample.1.weight`];
    return w?.[0];
  };
  const spatial = (stage: number): [number, number] | undefined => {
    if (!inputShape || inputShape.length !== 3) return undefined;
    let h = Math.floor(inputShape[1]! / 4), w = Math.floor(inputShape[2]! / 4);
    for (let s = 1; s <= stage; s++) { h = Math.floor(h / 2); w = Math.floor(w / 2); }
    return [h, w];
  };
  const rows: SummaryRow[] = [];
  for (const [name, g] of groups) {
    const parts = name.split('.');
    let kind = 'Module';
    let outSize: SummaryRow['outSize'];
    if (parts[0] === 'stem') {
      kind = parts.length === 1 ? 'Stem (Conv2d 4×4/4, LayerNorm)' : parts[1] === '0' ? 'Conv2d' : 'LayerNorm2d';
      const hw = spatial(0), c = channels(0);
      if (hw && c && (parts.length === 1 || parts[1] === '1')) outSize = ['B', c, ...hw];
    } else if (parts[0] === 'stages' && parts[1] !== undefined) {
      const stage = Number(parts[1]);
      const blocks = new Set(g.names.map((n) => n.split('.')[3]).filter((b) => b !== undefined && /^\d+$/.test(b))).size;
      kind = parts.length === 2 ? `Stage (${stage > 0 ? 'downsample, ' : ''}${blocks} blocks)` : parts[2] === 'downsample' ? 'Downsample' : parts[2] === 'blocks' ? `${blocks} blocks` : 'Module';
      const hw = spatial(stage), c = channels(stage);
      if (hw && c) outSize = ['B', c, ...hw];
    } else if (name === 'head.norm' || name === 'head') {
      kind = 'LayerNorm (after pooling)';
      outSize = ['B', model.native.numFeatures];
    } else {
      const weights = g.names.filter((n) => n.endsWith('.weight') && shapes[n]!.length === 2);
      const last = weights.sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1])).pop();
      kind = weights.length > 1 || g.names.length > 2 ? 'MLP' : 'Linear';
      if (last) outSize = ['B', shapes[last]![0]!];
    }
    rows.push({ name, kind, params: g.params, ...(outSize ? { outSize } : {}) });
  }
  const trainable = model.numParameters(true);
  return { rows, trainable, nonTrainable: total - trainable, total, sizeMb: (total * 4) / 1e6 };
}

/** Lightning's compact counts: 1.2 K, 3.5 M. */
export function formatCount(n: number): string {
  if (n < 1000) return String(n);
  const [v, u] = n < 1e6 ? [n / 1e3, 'K'] : n < 1e9 ? [n / 1e6, 'M'] : [n / 1e9, 'B'];
  return `${v.toFixed(1)} ${u}`;
}

/** The summary as Lightning prints it: a table, then the totals. */
export function formatSummary(s: Summary): string {
  const head = ['', 'Name', 'Type', 'Params', 'Out sizes'];
  const body = s.rows.map((r, i) => [String(i), r.name, r.kind, formatCount(r.params), r.outSize ? `[${r.outSize.join(', ')}]` : '?']);
  const widths = head.map((h, c) => Math.max(h.length, ...body.map((row) => row[c]!.length)));
  const line = (cells: string[]) => cells.map((x, c) => x.padEnd(widths[c]!)).join(' | ').trimEnd();
  const rule = '-'.repeat(line(head).length);
  return [
    line(head), rule, ...body.map(line), rule,
    `${formatCount(s.trainable).padEnd(9)} Trainable params`,
    `${formatCount(s.nonTrainable).padEnd(9)} Non-trainable params`,
    `${formatCount(s.total).padEnd(9)} Total params`,
    `${s.sizeMb.toFixed(3).padEnd(9)} Total estimated model params size (MB)`,
  ].join('\n');
}

export class ModelSummary extends Callback {
  /** Data-parallel: rank 0 alone (it writes files, logs to the run or prints). */
  override get rankZeroOnly(): boolean {
    return true;
  }
  readonly maxDepth: number;
  /** The summary printed by the last fit. */
  summary: Summary | undefined;
  private readonly write: (text: string) => void;

  constructor(options: ModelSummaryOptions & { write?: (text: string) => void } = {}) {
    super();
    const { write, ...rest } = options;
    this.maxDepth = parseOptions(modelSummaryOptionsSchema, rest, 'ModelSummary options').maxDepth;
    this.write = write ?? ((t) => process.stdout.write(t));
  }

  override onFitStart(trainer: TrainerView): void {
    if (!trainer.model) return;
    this.summary = summarize(trainer.model, trainer.datamodule?.inputShape, this.maxDepth);
    this.write(`${formatSummary(this.summary)}\n`);
  }
}
