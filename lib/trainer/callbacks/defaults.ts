// The callbacks a Trainer adds by itself: its logger (an MLflowLogger, or one around a given MLflowTracker) and,
// on a terminal, a progress bar. The Trainer calls these two functions and knows no callback class beyond them.
import type { TrainerConfig } from '../../config.js';
import { MLflowTracker } from '../../tracking/index.js';
import type { Callback } from '../callback.js';
import { FigureLogger } from './figures.js';
import { MLflowLogger } from './mlflow_logger.js';
import { ModelSummary } from './model_summary.js';
import { ProgressBar } from './progress_bar.js';
import { Timer } from './timer.js';

/** An MLflowLogger, or an MLflowTracker to log through (one run per fit), or false / nothing. */
export type LoggerOption = MLflowLogger | MLflowTracker | false | undefined;

/** The logger callback for the Trainer's `logger` option. */
export function loggerCallback(logger: LoggerOption): MLflowLogger | undefined {
  if (logger instanceof MLflowTracker) return new MLflowLogger({ tracker: logger });
  return logger || undefined;
}

/**
 * `callbacks` with, unless already there: a FigureLogger (with a logger and `logFigures`) just before the logger (so
 * it logs while the run is open), the logger, a progress bar (when wanted), and as Lightning adds them: a Timer for
 * `maxTime` (unless one with a duration is given) and a ModelSummary when `enableModelSummary` (unless one is given).
 */
export function withDefaultCallbacks(callbacks: readonly Callback[], logger: MLflowLogger | undefined, progressBar: boolean, config?: TrainerConfig): Callback[] {
  const all = [...callbacks];
  if (logger && (config?.logFigures ?? true) && !all.some((c) => c instanceof FigureLogger)) {
    const at = all.indexOf(logger);
    all.splice(at < 0 ? all.length : at, 0, new FigureLogger());
  }
  if (config?.maxTime !== undefined && !all.some((c) => c instanceof Timer && c.durationMs !== undefined)) {
    all.push(new Timer({ duration: { seconds: config.maxTime / 1000 } }));
  }
  if (config?.enableModelSummary && !all.some((c) => c instanceof ModelSummary)) all.unshift(new ModelSummary());
  if (logger && !all.includes(logger)) all.push(logger);
  if (progressBar && !all.some((c) => c instanceof ProgressBar)) all.push(new ProgressBar());
  return all;
}
