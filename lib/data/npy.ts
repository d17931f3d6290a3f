// NumPy .npy files read natively (native/data/heimdall/npy.cc): little-endian float32, float64 and complex64
// in C order, format versions 1–3. Values come back as float32; complex values as interleaved (re, im) pairs
// with a trailing 2 in `shape`. A bad file rejects with code HEIMDALL_BAD_FILE and a message naming it.
import { native } from '../native.js';

export interface NpyArray {
  data: Float32Array;
  shape: number[];
  /** The file's dtype: '<f4', '<f8' or '<c8'. */
  dtype: string;
}

export async function loadNpy(path: string): Promise<NpyArray> {
  const a = native() as unknown as { readNpy?: (path: string) => Promise<NpyArray> };
  if (typeof a.readNpy !== 'function') throw new Error('heimdall-torch: this build of the native addon lacks readNpy; rebuild with `npm run build:native`.');
  return a.readNpy(path);
}
