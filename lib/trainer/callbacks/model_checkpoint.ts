// ModelCheckpoint: keeps the top-k checkpoints by a monitored metric, plus the last one.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { z } from 'zod';
import { modelCheckpointOptionsSchema, parseOptions } from '../../config.js';
import { Callback, type CheckpointCallback, type Metrics, type TrainerView } from '../callback.js';

/** Options (lib/config.ts' modelCheckpointOptionsSchema): dirpath, filename, monitor, mode, saveTopK (3), saveLast (true). */
export type ModelCheckpointOptions = z.input<typeof modelCheckpointOptionsSchema>;

interface Kept {
  path: string;
  score: number;
  epoch: number;
}

/** `val/loss` → `val_loss`: metric keys as they may appear in file names. */
export function pathSafe(key: string): string {
  return key.replace(/[^A-Za-z0-9_.-]+/g, '_');
}

export function formatFilename(template: string, epoch: number, metrics: Metrics, step?: number): string {
  return template.replace(/\{([^}:]+)(?::\.(\d+)f)?\}/g, (_, key: string, digits?: string) => {
    if (key === 'epoch') return `epoch=${epoch}`;
    if (key === 'step' && step !== undefined) return `step=${step}`;
    const v = metrics[key];
    const text = v === undefined ? 'nan' : digits !== undefined ? v.toFixed(Number(digits)) : String(v);
    return `${pathSafe(key)}=${text}`;
  });
}

export class ModelCheckpoint extends Callback implements CheckpointCallback {
  override get runsInFastDevRun(): boolean {
    return false;
  }
  override get rankZeroOnly(): boolean {
    return true;
  }
  readonly monitor: string;
  readonly mode: 'min' | 'max';
  readonly saveTopK: number;
  readonly saveLast: boolean;
  readonly filename: string;
  private readonly dirpathOption?: string;
  private readonly filenameOption?: string;
  private kept: Kept[] = [];
  /** Kept checkpoints named by a restored state, until onFitStart finds them in this callback's folder. */
  private restored: { name: string; score: number; epoch: number }[] | null = null;
  lastModelPath: string | undefined;

  constructor(options: ModelCheckpointOptions = {}) {
    super();
    const o = parseOptions(modelCheckpointOptionsSchema, options, 'ModelCheckpoint options');
    this.monitor = o.monitor;
    this.mode = o.mode;
    this.saveTopK = o.saveTopK;
    this.saveLast = o.saveLast;
    this.filename = o.filename ?? `{epoch}-{${this.monitor}:.4f}`;
    this.filenameOption = o.filename;
    this.dirpathOption = o.dirpath;
  }

  /** `ModelCheckpoint{"monitor":"val/loss","mode":"min"}` (plus dirpath and filename when given). */
  override get stateKey(): string {
    return this.stateKeyOf({ monitor: this.monitor, mode: this.mode, dirpath: this.dirpathOption, filename: this.filenameOption });
  }

  /** The best checkpoint so far and its score. */
  get bestModelPath(): string | undefined {
    return this.sorted()[0]?.path;
  }
  get bestModelScore(): number | undefined {
    return this.sorted()[0]?.score;
  }
  /** The kept top-k, best first. */
  get bestK(): ReadonlyArray<{ path: string; score: number; epoch: number }> {
    return this.sorted();
  }

  dirpath(trainer: TrainerView): string {
    return this.dirpathOption ?? join(trainer.rootDir, 'checkpoints');
  }

  /**
   * A restored state names its checkpoints by file name: they count as kept only when they are in this
   * callback's folder now. Top-k rotation deletes only files it finds there — never the folder of the run the
   * checkpoint came from (resuming in a copied output folder), nor any path a crafted checkpoint names.
   */
  override onFitStart(trainer: TrainerView): void {
    if (!this.restored) return;
    const dir = this.dirpath(trainer);
    this.kept = this.restored.map((k) => ({ path: join(dir, k.name), score: k.score, epoch: k.epoch })).filter((k) => existsSync(k.path));
    this.restored = null;
  }

  override async onTrainEpochEnd(trainer: TrainerView, metrics: Metrics): Promise<void> {
    await this.save(trainer, trainer.currentEpoch - 1, metrics); // the epoch that just ended
  }

  /** A validation inside the epoch (valCheckInterval): scored and saved as at an epoch's end, `last` included. */
  override async onValidationEnd(trainer: TrainerView, metrics: Metrics): Promise<void> {
    await this.save(trainer, trainer.currentEpoch, metrics);
  }

  private async save(trainer: TrainerView, epoch: number, metrics: Metrics): Promise<void> {
    const dir = this.dirpath(trainer);
    mkdirSync(dir, { recursive: true });
    const score = metrics[this.monitor];
    if (this.saveTopK !== 0 && score !== undefined && Number.isFinite(score)) {
      const worst = this.sorted().at(-1);
      const full = this.saveTopK > 0 && this.kept.length >= this.saveTopK;
      if (!full || (worst && this.better(score, worst.score))) {
        const path = join(dir, `${formatFilename(this.filename, epoch, metrics, trainer.globalStep)}.safetensors`);
        await trainer.saveCheckpoint(path);
        this.kept = this.kept.filter((k) => k.path !== path);
        this.kept.push({ path, score, epoch });
        if (this.saveTopK > 0) {
          for (const gone of this.sorted().slice(this.saveTopK)) {
            rmSync(gone.path, { force: true });
            this.kept = this.kept.filter((k) => k !== gone);
          }
        }
      }
    }
    if (this.saveLast) {
      this.lastModelPath = join(dir, 'last.safetensors');
      await trainer.saveCheckpoint(this.lastModelPath);
    }
  }

  override stateDict(): Record<string, unknown> {
    const kept = this.kept.map((k) => ({ name: basename(k.path), score: k.score, epoch: k.epoch }));
    return { kept, lastModelPath: this.lastModelPath ?? null, monitor: this.monitor, mode: this.mode };
  }
  override loadStateDict(state: Record<string, unknown>): void {
    // `name` (a file name in the folder); states written before kept `path` (absolute): only its file name counts.
    const entries = Array.isArray(state.kept) ? (state.kept as Record<string, unknown>[]) : [];
    this.restored = entries.flatMap((e) => {
      const raw = typeof e?.name === 'string' ? e.name : typeof e?.path === 'string' ? basename(e.path.split('\\').join('/')) : '';
      const ok = /^[^/\\]+\.safetensors$/.test(raw) && typeof e.score === 'number' && typeof e.epoch === 'number';
      return ok ? [{ name: raw, score: e.score as number, epoch: e.epoch as number }] : [];
    });
    this.kept = [];
    this.lastModelPath = typeof state.lastModelPath === 'string' ? state.lastModelPath : undefined;
  }

  private better(a: number, b: number): boolean {
    return this.mode === 'min' ? a < b : a > b;
  }
  private sorted(): Kept[] {
    return [...this.kept].sort((x, y) => (this.mode === 'min' ? x.score - y.score : y.score - x.score));
  }
}
