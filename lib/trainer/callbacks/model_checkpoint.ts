// ModelCheckpoint: keeps the top-k checkpoints by a monitored metric, plus the last one.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Callback, type Metrics } from '../callback.js';
import type { Trainer } from '../trainer.js';

export interface ModelCheckpointOptions {
  /** Folder (default `<defaultRootDir>/checkpoints`). */
  dirpath?: string;
  /** Template: `{epoch}` and `{<metric>}` with an optional format `{val/loss:.4f}`; keys become path-safe (`val_loss`). */
  filename?: string;
  monitor?: string;
  mode?: 'min' | 'max';
  /** How many best checkpoints to keep (default 3; 0 keeps none, -1 keeps all). */
  saveTopK?: number;
  /** Also write `last.safetensors` every epoch (default true). */
  saveLast?: boolean;
}

interface Kept {
  path: string;
  score: number;
  epoch: number;
}

/** `val/loss` → `val_loss`: metric keys as they may appear in file names. */
export function pathSafe(key: string): string {
  return key.replace(/[^A-Za-z0-9_.-]+/g, '_');
}

export function formatFilename(template: string, epoch: number, metrics: Metrics): string {
  return template.replace(/\{([^}:]+)(?::\.(\d+)f)?\}/g, (_, key: string, digits?: string) => {
    if (key === 'epoch') return `epoch=${epoch}`;
    const v = metrics[key];
    const text = v === undefined ? 'nan' : digits !== undefined ? v.toFixed(Number(digits)) : String(v);
    return `${pathSafe(key)}=${text}`;
  });
}

export class ModelCheckpoint extends Callback {
  readonly monitor: string;
  readonly mode: 'min' | 'max';
  readonly saveTopK: number;
  readonly saveLast: boolean;
  readonly filename: string;
  private dirpathOption?: string;
  private kept: Kept[] = [];
  lastModelPath?: string;

  constructor(options: ModelCheckpointOptions = {}) {
    super();
    this.monitor = options.monitor ?? 'val/loss';
    this.mode = options.mode ?? 'min';
    this.saveTopK = options.saveTopK ?? 3;
    this.saveLast = options.saveLast ?? true;
    this.filename = options.filename ?? `{epoch}-{${this.monitor}:.4f}`;
    this.dirpathOption = options.dirpath;
    if (!Number.isInteger(this.saveTopK) || this.saveTopK < -1) throw new Error('ModelCheckpoint: saveTopK must be an integer ≥ -1');
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

  dirpath(trainer: Trainer): string {
    return this.dirpathOption ?? join(trainer.rootDir, 'checkpoints');
  }

  override async onTrainEpochEnd(trainer: Trainer, metrics: Metrics): Promise<void> {
    const dir = this.dirpath(trainer);
    mkdirSync(dir, { recursive: true });
    const epoch = trainer.currentEpoch - 1; // the epoch that just ended
    const score = metrics[this.monitor];
    if (this.saveTopK !== 0 && score !== undefined && Number.isFinite(score)) {
      const worst = this.sorted().at(-1);
      const full = this.saveTopK > 0 && this.kept.length >= this.saveTopK;
      if (!full || (worst && this.better(score, worst.score))) {
        const path = join(dir, `${formatFilename(this.filename, epoch, metrics)}.safetensors`);
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
    return { kept: this.kept, lastModelPath: this.lastModelPath ?? null, monitor: this.monitor, mode: this.mode };
  }
  override loadStateDict(state: Record<string, unknown>): void {
    this.kept = Array.isArray(state.kept) ? (state.kept as Kept[]) : [];
    this.lastModelPath = typeof state.lastModelPath === 'string' ? state.lastModelPath : undefined;
  }

  private better(a: number, b: number): boolean {
    return this.mode === 'min' ? a < b : a > b;
  }
  private sorted(): Kept[] {
    return [...this.kept].sort((x, y) => (this.mode === 'min' ? x.score - y.score : y.score - x.score));
  }
}
