// Errors of the export → registry → inference path. `code` follows the addon's HEIMDALL_* codes, so the CLI
// maps them to exit codes the same way (HEIMDALL_INVALID_ARGUMENT → 2, anything else → 1).
export type InferenceErrorCode =
  | 'HEIMDALL_INVALID_ARGUMENT'
  | 'HEIMDALL_NOT_FOUND'
  | 'HEIMDALL_BAD_FILE'
  | 'HEIMDALL_WEIGHTS_MISMATCH'
  | 'HEIMDALL_SHAPE_MISMATCH';

export class InferenceError extends Error {
  readonly code: InferenceErrorCode;
  constructor(code: InferenceErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'InferenceError';
    this.code = code;
  }
}

export const notFound = (message: string, cause?: unknown) => new InferenceError('HEIMDALL_NOT_FOUND', message, { cause });
export const badInput = (message: string) => new InferenceError('HEIMDALL_INVALID_ARGUMENT', message);
export const badFile = (message: string, cause?: unknown) => new InferenceError('HEIMDALL_BAD_FILE', message, { cause });
