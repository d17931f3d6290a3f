// Public API of the MLflow tracker (re-exported by lib/index.ts).
export { MLflowTracker, DEFAULT_RUN_TAGS, EXPERIMENT_KIND_TAG, TRAINING_EXPERIMENT_KIND } from './tracker.js';
export type { MLflowTrackerOptions, StartRunOptions, RunSummary, BestRun, CloseReport, LoggedModelResult, LogModelOptions } from './tracker.js';
export type { FlushReport } from './protocol.js';
export type { RegisterModelOptions } from './registry.js';
export type { PendingCounts } from './spool.js';
export { MlflowError, isRetryable } from './errors.js';
export type { MlflowErrorCode } from './errors.js';
export { parseFilter, parseOrderBy, quoteKey } from './filter.js';
export { flattenParams } from './validation.js';
export { createStore, openStore } from './stores.js';
export { SqlStore } from './sql/store.js';
export { RestStore } from './rest/store.js';
export { artifactRepositoryFor, sha256File } from './artifacts.js';
export { authorizationFor, isTrackingOrigin, originOf } from './credentials.js';
export { claimSignals } from './process_hooks.js';
export type * from './types.js';
export { trackerConfigSchema, loadTrackerConfig, redact, ConfigError, TRACKER_ENV } from '../config.js';
export type { TrackerConfig, TrackerConfigInput } from '../config.js';
