// How a process ends the runs of its live trackers: SIGINT/SIGTERM end them KILLED (exit 130/143), an uncaught
// exception FAILED (exit 1), a script that ends without close() FINISHED — like MLflow's atexit hook.
import { redact } from '../config.js';
import type { RunStatus } from './types.js';

/** What the hooks need of a tracker. */
export interface EndableTracker {
  readonly handlesSignals: boolean;
  /** True while a run is open or operations are not delivered. */
  readonly needsClose: boolean;
  readonly config: { readonly closeTimeoutS: number };
  close(opts: { status?: RunStatus; timeoutMs?: number }): Promise<unknown>;
  fail(err: unknown): Promise<unknown>;
}

const live = new Set<EndableTracker>();
/** Claims of components that end their work gracefully on SIGINT/SIGTERM themselves (a fitting Trainer). */
const signalClaims = new Set<symbol>();
let handlersInstalled = false;
let exitHookInstalled = false;

/** From its worker's start until it is gone, the tracker's run is ended by the process hooks. */
export function watchTracker(t: EndableTracker): void {
  live.add(t);
  installExitHook();
  if (t.handlesSignals) installProcessHandlers();
}

export function unwatchTracker(t: EndableTracker): void {
  live.delete(t);
}

/**
 * Claims SIGINT/SIGTERM for a component that stops gracefully on its own (the Trainer: stop at a batch boundary,
 * write a checkpoint, end its run KILLED, exit at once on a second signal). While a claim is held, trackers leave
 * the signals to it instead of ending their runs and exiting. Returns the release function.
 */
export function claimSignals(owner: string): () => void {
  const claim = Symbol(owner);
  signalClaims.add(claim);
  return () => {
    signalClaims.delete(claim);
  };
}

function installProcessHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals, code: number) => {
    if (signalClaims.size > 0 && !stopping) return; // the claimant stops gracefully (and exits on a second signal)
    if (stopping) process.exit(code); // a second Ctrl-C does not wait for the flush
    stopping = true;
    process.stderr.write(`\nheimdall-torch: ${signal}: flushing the MLflow tracker and ending the run KILLED\n`);
    const all = [...live].filter((t) => t.handlesSignals);
    Promise.allSettled(all.map((t) => t.close({ status: 'KILLED', timeoutMs: Math.min(t.config.closeTimeoutS * 1000, 15_000) })))
      .finally(() => process.exit(code));
  };
  process.on('SIGINT', () => onSignal('SIGINT', 130));
  process.on('SIGTERM', () => onSignal('SIGTERM', 143));
  process.on('uncaughtException', (err) => {
    process.stderr.write(`${redact(err instanceof Error ? (err.stack ?? err.message) : String(err))}\n`);
    const all = [...live].filter((t) => t.handlesSignals);
    Promise.allSettled(all.map((t) => t.fail(err))).finally(() => process.exit(1));
  });
}

/** A script that ends without close(): deliver and finish the runs (FINISHED). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('beforeExit', () => {
    for (const t of live) if (t.needsClose) void t.close({});
  });
}
