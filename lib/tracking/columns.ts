// Metric points buffered on the caller's thread in columns (typed arrays + a key table), so that handing a
// chunk to the worker is a transfer of four buffers rather than a structured clone of thousands of objects.
import type { Metric } from './types.js';

export const CHUNK_POINTS = 4096;

export interface WireMetrics {
  keys: string[];
  ki: Int32Array;
  v: Float64Array;
  s: Float64Array;
  t: Float64Array;
  n: number;
}

export class MetricColumns {
  readonly keys: string[] = [];
  private readonly index = new Map<string, number>();
  private ki = new Int32Array(CHUNK_POINTS);
  private v = new Float64Array(CHUNK_POINTS);
  private s = new Float64Array(CHUNK_POINTS);
  private t = new Float64Array(CHUNK_POINTS);
  n = 0;

  push(key: string, value: number, step: number, timestamp: number): void {
    let i = this.index.get(key);
    if (i === undefined) {
      i = this.keys.length;
      this.keys.push(key);
      this.index.set(key, i);
    }
    const n = this.n++;
    this.ki[n] = i;
    this.v[n] = value;
    this.s[n] = step;
    this.t[n] = timestamp;
  }

  get full(): boolean {
    return this.n >= CHUNK_POINTS;
  }

  /** The chunk and the buffers to transfer with it (this object must not be used afterwards). */
  toWire(): { wire: WireMetrics; transfer: ArrayBuffer[] } {
    const wire = { keys: this.keys, ki: this.ki, v: this.v, s: this.s, t: this.t, n: this.n };
    return { wire, transfer: [this.ki.buffer, this.v.buffer, this.s.buffer, this.t.buffer] as ArrayBuffer[] };
  }
}

export function wireToMetrics(w: WireMetrics): Metric[] {
  const out = new Array<Metric>(w.n);
  for (let i = 0; i < w.n; i++) out[i] = { key: w.keys[w.ki[i]!]!, value: w.v[i]!, timestamp: w.t[i]!, step: w.s[i]! };
  return out;
}
