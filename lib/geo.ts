// Great-circle distances and summaries for reports (the native metrics do the same on the training path).
const EARTH_RADIUS_M = 6371008.8;

/** Haversine distance in metres between (lat, lon) points in degrees. */
export function haversineM(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const r = Math.PI / 180;
  const h = Math.sin(((lat2 - lat1) * r) / 2) ** 2 + Math.cos(lat1 * r) * Math.cos(lat2 * r) * Math.sin(((lon2 - lon1) * r) / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.sqrt(Math.min(1, Math.max(0, h))));
}

export interface ErrorSummary {
  mean: number;
  median: number;
  p68: number;
  p95: number;
  count: number;
}

/** Mean and percentiles (linear interpolation, numpy's default). */
export function summarize(values: ArrayLike<number>): ErrorSummary {
  const v = Array.from(values).sort((a, b) => a - b);
  const pct = (q: number) => {
    if (v.length === 0) return NaN;
    const pos = q * (v.length - 1);
    const lo = Math.floor(pos), hi = Math.min(v.length - 1, lo + 1);
    return v[lo]! + (v[hi]! - v[lo]!) * (pos - lo);
  };
  const mean = v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
  return { mean, median: pct(0.5), p68: pct(0.68), p95: pct(0.95), count: v.length };
}
