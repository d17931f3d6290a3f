// Where the tracking credentials (MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME/PASSWORD) may be sent: only
// to the tracking server's own origin (scheme, host and port of MLFLOW_TRACKING_URI). An artifact location is
// data any user of a shared server can set (`mlflow-artifacts://other-host:port/…` on an experiment): a request
// to another origin is sent without an Authorization header — never with our credentials. If that other server
// demands credentials, its 401/403 says so, and the error names the origin that got none.
import type { TrackerConfig } from '../config.js';

/** `scheme://host:port` of a URL, with the scheme's default port made explicit; null when it is not a URL. */
export function originOf(url: string): string | null {
  let u: URL;
  try { u = new URL(url); } catch { return null; }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
  const port = u.port || (u.protocol === 'https:' ? '443' : '80');
  return `${u.protocol}//${u.hostname.toLowerCase()}:${port}`;
}

/** True when `url` is on the tracking server's own origin (the only one that gets the tracking credentials). */
export function isTrackingOrigin(url: string, trackingUri: string): boolean {
  const a = originOf(url);
  return a !== null && a === originOf(trackingUri);
}

/**
 * The Authorization header for a request to `url`: the configured token (Bearer) or user and password (Basic)
 * when `url` is on the tracking server's origin, nothing otherwise. Exported for every HTTP client of the
 * package (the tracker's artifact proxy uploads; inference's downloads should call it too).
 */
export function authorizationFor(url: string, cfg: Pick<TrackerConfig, 'trackingUri' | 'trackingToken' | 'trackingUsername' | 'trackingPassword'>): Record<string, string> {
  if (!isTrackingOrigin(url, cfg.trackingUri)) return {};
  if (cfg.trackingToken) return { Authorization: `Bearer ${cfg.trackingToken}` };
  if (cfg.trackingUsername !== undefined && cfg.trackingPassword !== undefined) {
    return { Authorization: `Basic ${Buffer.from(`${cfg.trackingUsername}:${cfg.trackingPassword}`).toString('base64')}` };
  }
  return {};
}
