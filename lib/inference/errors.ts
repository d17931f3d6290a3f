// Errors of the export → registry → inference path: HeimdallErrors with the addon's HEIMDALL_* codes, so the
// CLI maps them to exit codes the same way (HEIMDALL_INVALID_ARGUMENT → 2, anything else → 1). `option` names
// the argument at fault (the CLI turns it into its flag).
import { HeimdallError } from '../errors.js';

export type InferenceErrorCode =
  | 'HEIMDALL_INVALID_ARGUMENT'
  | 'HEIMDALL_NOT_FOUND'
  | 'HEIMDALL_BAD_FILE'
  | 'HEIMDALL_WEIGHTS_MISMATCH'
  | 'HEIMDALL_SHAPE_MISMATCH';

export class InferenceError extends HeimdallError<InferenceErrorCode> {
  constructor(code: InferenceErrorCode, message: string, options?: { cause?: unknown; option?: string }) {
    super(code, message, options);
    this.name = 'InferenceError';
  }
}

export const notFound = (message: string, cause?: unknown, option?: string) => new InferenceError('HEIMDALL_NOT_FOUND', message, { cause, option });
export const badInput = (message: string, option?: string) => new InferenceError('HEIMDALL_INVALID_ARGUMENT', message, { option });
export const badFile = (message: string, cause?: unknown) => new InferenceError('HEIMDALL_BAD_FILE', message, { cause });
