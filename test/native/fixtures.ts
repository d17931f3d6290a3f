// Small learnable tasks for the native tests, generated deterministically in JS.
import { native, type NativeDataset } from '../../lib/native.js';

/** A seeded PRNG (mulberry32) so fixtures are identical on every run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A bright Gaussian blob on a noisy C×S×S image; the target is its centre, normalised to [-1, 1]
 * as (row, col). Learnable by any ConvNeXt in a few epochs.
 */
export function blobs(n: number, seed: number, size = 32, channels = 3): { inputs: Float32Array; targets: Float32Array } {
  const r = rng(seed);
  const inputs = new Float32Array(n * channels * size * size);
  const targets = new Float32Array(n * 2);
  for (let i = 0; i < n; i++) {
    const cy = 4 + r() * (size - 8);
    const cx = 4 + r() * (size - 8);
    targets[2 * i] = (cy - size / 2) / (size / 2);
    targets[2 * i + 1] = (cx - size / 2) / (size / 2);
    for (let c = 0; c < channels; c++) {
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          const d2 = (y - cy) ** 2 + (x - cx) ** 2;
          inputs[((i * channels + c) * size + y) * size + x] = 2 * Math.exp(-d2 / 8) + 0.1 * (r() - 0.5);
        }
      }
    }
  }
  return { inputs, targets };
}

export function blobDataset(n: number, seed: number, size = 32): NativeDataset {
  const { inputs, targets } = blobs(n, seed, size);
  return native().tensorDataset(inputs, [n, 3, size, size], targets, [n, 2]);
}
