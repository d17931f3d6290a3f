// The one map from a tracking URI to its store, like MLflow's: sqlite:///, postgresql(+driver)://, http(s)://.
// Which scheme is which kind is the table in schemes.ts (the configuration validates the URI with it too).
import type { TrackerConfig } from '../config.js';
import { invalidParameter } from './errors.js';
import { RestStore } from './rest/store.js';
import { parseTrackingUri, type StoreKind } from './schemes.js';
import { pgConnectionString, sqlitePathFromUri } from './sql/driver.js';
import { SqlStore } from './sql/store.js';
import type { TrackingStore } from './types.js';

/** One constructor per kind of store; each store it makes declares that kind (and its batch limits). */
const STORE_FACTORIES: Record<StoreKind, (cfg: TrackerConfig) => TrackingStore> = {
  sqlite: (cfg) => SqlStore.sqlite(sqlitePathFromUri(cfg.trackingUri)),
  postgresql: (cfg) => SqlStore.postgres(pgConnectionString(cfg.trackingUri)),
  rest: (cfg) => new RestStore({
    trackingUri: cfg.trackingUri,
    username: cfg.trackingUsername,
    password: cfg.trackingPassword,
    token: cfg.trackingToken,
    insecureTls: cfg.trackingInsecureTls,
    timeoutS: cfg.httpRequestTimeoutS,
    maxRetries: cfg.httpRequestMaxRetries,
  }),
};

/** The store for the configured tracking URI (not opened yet). An unsupported URI gets one error naming the supported schemes. */
export function createStore(cfg: TrackerConfig): TrackingStore {
  const { kind, problem } = parseTrackingUri(cfg.trackingUri);
  if (kind === null) throw invalidParameter(problem);
  return STORE_FACTORIES[kind](cfg);
}

/** Creates and opens the store (schema check/creation for SQL, a first request for REST). */
export async function openStore(cfg: TrackerConfig): Promise<TrackingStore> {
  const store = createStore(cfg);
  await store.open();
  return store;
}
