// The callbacks a Trainer adds by itself: its logger (an MLflowLogger, or one around a given MLflowTracker) and,
// on a terminal, a progress bar. The Trainer calls these two functions and knows no callback class beyond them.
import { MLflowTracker } from '../../tracking/index.js';
import type { Callback } from '../callback.js';
import { FigureLogger } from './figures.js';
import { MLflowLogger } from './mlflow_logger.js';
import { ProgressBar } from './progress_bar.js';

/** An MLflowLogger, or an MLflowTracker to log through (one run per fit), or false / nothing. */
export type LoggerOption = MLflowLogger | MLflowTracker | false | undefined;

/** The logger callback for the Trainer's `logger` option. */
export function loggerCallback(logger: LoggerOption): MLflowLogger | undefined {
  if (logger instanceof MLflowTracker) return new MLflowLogger({ tracker: logger });
  return logger || undefined;
}

/**
 * `callbacks` with, unless already there: a FigureLogger (with a logger and `figures`) just before the logger (so
 * it logs while the run is open), the logger, and a progress bar (when wanted).
 */
export function withDefaultCallbacks(callbacks: readonly Callback[], logger: MLflowLogger | undefined, progressBar: boolean, figures = true): Callback[] {
  const all = [...callbacks];
  if (logger && figures && !all.some((c) => c instanceof FigureLogger)) {
    const at = all.indexOf(logger);
    all.splice(at < 0 ? all.length : at, 0, new FigureLogger());
  }
  if (logger && !all.includes(logger)) all.push(logger);
  if (progressBar && !all.some((c) => c instanceof ProgressBar)) all.push(new ProgressBar());
  return all;
}
