// NumPy .npy files read natively (native/data/heimdall/npy.cc): little-endian float32, float64 and complex64
// in C order, format versions 1–3. Values come back as float32; complex values as interleaved (re, im) pairs
// with a trailing 2 in `shape`. A bad file rejects with code HEIMDALL_BAD_FILE and a message naming it.
import { dataBinding, type NpyArray } from '../native.js';

export type { NpyArray } from '../native.js';

export async function loadNpy(path: string): Promise<NpyArray> {
  return dataBinding().readNpy(path);
}
