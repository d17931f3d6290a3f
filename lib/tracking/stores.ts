// Picks the store from MLFLOW_TRACKING_URI, like MLflow: sqlite:///, postgresql(+driver)://, http(s)://.
import type { TrackerConfig } from '../config.js';
import { invalidParameter } from './errors.js';
import { RestStore } from './rest/store.js';
import { pgConnectionString, sqlitePathFromUri } from './sql/driver.js';
import { SqlStore } from './sql/store.js';
import type { TrackingStore } from './types.js';

export function createStore(cfg: TrackerConfig): TrackingStore {
  const uri = cfg.trackingUri;
  if (/^sqlite:/i.test(uri)) return SqlStore.sqlite(sqlitePathFromUri(uri));
  if (/^(postgresql|postgres)(\+[a-z0-9]+)?:\/\//i.test(uri)) return SqlStore.postgres(pgConnectionString(uri));
  if (/^https?:\/\//i.test(uri)) {
    return new RestStore({
      trackingUri: uri,
      username: cfg.trackingUsername,
      password: cfg.trackingPassword,
      token: cfg.trackingToken,
      insecureTls: cfg.trackingInsecureTls,
      timeoutS: cfg.httpRequestTimeoutS,
      maxRetries: cfg.httpRequestMaxRetries,
    });
  }
  throw invalidParameter(`Unsupported tracking URI scheme in '${uri}'`);
}

/** Creates and opens the store (schema check/creation for SQL, a first request for REST). */
export async function openStore(cfg: TrackerConfig): Promise<TrackingStore> {
  const store = createStore(cfg);
  await store.open();
  return store;
}
