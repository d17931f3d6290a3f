// OnExceptionCheckpoint: Lightning's callback of the same name. When fit fails (a NaN loss, a data error, a
// throwing callback), it saves a full training checkpoint of the weights as they were — so hours of training
// are not lost to one bad batch — and says where. `fit({ ckptPath })` resumes from it.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { parseOptions } from '../../config.js';
import { Callback, type TrainerView } from '../callback.js';

export const onExceptionCheckpointOptionsSchema = z
  .object({
    /** Folder (default `<defaultRootDir>/checkpoints`). */
    dirpath: z.string().min(1).optional(),
    /** File name without extension (default `on_exception`, as Lightning). */
    filename: z.string().min(1).regex(/^[^/\\]+$/, 'must be a file name, not a path').default('on_exception'),
  })
  .strict();
export type OnExceptionCheckpointOptions = z.input<typeof onExceptionCheckpointOptionsSchema>;

export class OnExceptionCheckpoint extends Callback {
  /** Data-parallel: rank 0 alone (it writes files, logs to the run or prints). */
  override get rankZeroOnly(): boolean {
    return true;
  }
  override get runsInFastDevRun(): boolean {
    return false;
  }
  private readonly dirpath: string | undefined;
  private readonly filename: string;
  /** Where the last exception's checkpoint went. */
  savedPath: string | undefined;

  constructor(options: OnExceptionCheckpointOptions = {}) {
    super();
    const o = parseOptions(onExceptionCheckpointOptionsSchema, options, 'OnExceptionCheckpoint options');
    this.dirpath = o.dirpath;
    this.filename = o.filename;
  }

  override get stateKey(): string {
    return this.stateKeyOf({ dirpath: this.dirpath, filename: this.filename });
  }

  override async onException(trainer: TrainerView, error: Error): Promise<void> {
    const dir = resolve(this.dirpath ?? join(trainer.rootDir, 'checkpoints'));
    const path = join(dir, `${this.filename}.safetensors`);
    try {
      mkdirSync(dir, { recursive: true });
      await trainer.saveCheckpoint(path);
      this.savedPath = path;
      process.stderr.write(`heimdall-torch: fit failed (${error.message.split('\n')[0]}); checkpoint saved to ${path}\n`);
    } catch (saveError) {
      // No engine yet (the failure came before training started), or the disk is full: the original error matters.
      process.stderr.write(`heimdall-torch: fit failed and no checkpoint could be saved: ${(saveError as Error).message.split('\n')[0]}\n`);
    }
  }
}
