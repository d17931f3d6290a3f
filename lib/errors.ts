// The one error base class of heimdall-torch. Every error the package throws on purpose is a HeimdallError
// (or a subclass: ConfigError, MlflowError, InferenceError, OnnxExportError, LibtorchError), so a caller
// writes one `catch (e) { if (e instanceof HeimdallError) switch (e.code) … }`. Native errors carry the same
// codes: native/errors.h declares them, lib/native.ts turns the addon's errors into HeimdallErrors.

/** Codes thrown by the native library (native/errors.h and the binding's error translation). */
export type NativeErrorCode =
  | 'HEIMDALL_INVALID_ARGUMENT'
  | 'HEIMDALL_SHAPE_MISMATCH'
  | 'HEIMDALL_UNKNOWN_VARIANT'
  | 'HEIMDALL_BAD_FILE'
  | 'HEIMDALL_NON_FINITE_LOSS'
  | 'HEIMDALL_DEVICE_UNAVAILABLE'
  | 'HEIMDALL_WEIGHTS_MISMATCH'
  | 'HEIMDALL_INVALID_STATE'
  | 'HEIMDALL_DISTRIBUTED'
  | 'HEIMDALL_OUT_OF_MEMORY'
  | 'HEIMDALL_TORCH_ERROR'
  | 'HEIMDALL_INTERNAL';

/** MLflow's own error codes, as its REST API and stores report them (the subset the stores produce). */
export type MlflowErrorCode =
  | 'INVALID_PARAMETER_VALUE'
  | 'RESOURCE_ALREADY_EXISTS'
  | 'RESOURCE_DOES_NOT_EXIST'
  | 'REQUEST_LIMIT_EXCEEDED'
  | 'INTERNAL_ERROR'
  | 'TEMPORARILY_UNAVAILABLE'
  | 'BAD_REQUEST'
  | 'INVALID_STATE';

/** Codes thrown by the TypeScript layer. */
export type LibraryErrorCode =
  | 'HEIMDALL_INVALID_CONFIG'
  | 'HEIMDALL_NOT_FOUND'
  | 'HEIMDALL_ONNX_MISMATCH'
  | 'HEIMDALL_ONNXRUNTIME_MISSING'
  | 'HEIMDALL_LIBTORCH_NOT_FOUND'
  | 'HEIMDALL_LIBTORCH_INCOMPATIBLE'
  | 'HEIMDALL_LIBTORCH_LOAD'
  | 'HEIMDALL_ADDON_NOT_FOUND'
  | 'HEIMDALL_ADDON_LOAD';

export type HeimdallErrorCode = NativeErrorCode | LibraryErrorCode | MlflowErrorCode;

const NATIVE_CODES: ReadonlySet<string> = new Set<NativeErrorCode>([
  'HEIMDALL_INVALID_ARGUMENT', 'HEIMDALL_SHAPE_MISMATCH', 'HEIMDALL_UNKNOWN_VARIANT', 'HEIMDALL_BAD_FILE',
  'HEIMDALL_NON_FINITE_LOSS', 'HEIMDALL_DEVICE_UNAVAILABLE', 'HEIMDALL_WEIGHTS_MISMATCH', 'HEIMDALL_INVALID_STATE',
  'HEIMDALL_DISTRIBUTED', 'HEIMDALL_OUT_OF_MEMORY', 'HEIMDALL_TORCH_ERROR', 'HEIMDALL_INTERNAL',
]);

/** True for the codes the addon throws. */
export function isNativeErrorCode(code: unknown): code is NativeErrorCode {
  return typeof code === 'string' && NATIVE_CODES.has(code);
}

export interface HeimdallErrorOptions {
  cause?: unknown;
  /**
   * The option or argument at fault, by its API name (`dataDir`, `checkpoint`, `runId`), when one is. The message
   * does not repeat it; a front end (the CLI) names it its own way (`--data-dir: …`).
   */
  option?: string;
}

export class HeimdallError<C extends HeimdallErrorCode = HeimdallErrorCode> extends Error {
  readonly code: C;
  readonly option?: string;
  constructor(code: C, message: string, options?: HeimdallErrorOptions) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'HeimdallError';
    this.code = code;
    if (options?.option !== undefined) this.option = options.option;
  }

  /**
   * The addon's errors are plain `Error`s with a string `code`; this gives them the class and type of every
   * other error of the package (same message, same code, the original as `cause`). Anything else is returned
   * unchanged.
   */
  static fromNative(err: unknown): unknown {
    if (err instanceof HeimdallError || !(err instanceof Error)) return err;
    const code = (err as { code?: unknown }).code;
    if (!isNativeErrorCode(code)) return err;
    const wrapped = new HeimdallError(code, err.message, { cause: err });
    if (err.stack) wrapped.stack = `HeimdallError [${code}]: ${err.message}\n${err.stack.split('\n').slice(1).join('\n')}`;
    return wrapped;
  }
}
