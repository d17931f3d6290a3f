"""Independent numpy references for the Heimdall data tests (test/data/*.test.ts).

Nothing here imports the project: the mel spectrogram is re-derived from its definition (HTK mel scale,
torchaudio's MelSpectrogram defaults: center=True with reflect padding, periodic Hann window, power 2,
norm=None) in float64, and .npy test files are written by numpy itself.

    reference.py mel <iq.npy> <sample_rate> <out.npy>
    reference.py features-dir <dir> <out_prefix>
    reference.py make-iq <out.npy> <kind> <seed>      kind: tones7 | short1d | real
    reference.py make-npy <dir>                       valid and broken .npy files; prints what it wrote
    reference.py haversine <a.npy> <b.npy>            great-circle errors (m) and their summary
"""
import json
import math
import os
import sys

import numpy as np

# The native defaults (native/data/heimdall/mel.h).
N_FFT, HOP, N_MELS, FRAMES = 2048, 512, 128, 32
AMIN, FLOOR_DB, REF_DB, SCALE_DB = 1e-20, -140.0, -80.0, 20.0
EARTH_RADIUS_M = 6371008.8


def htk_mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)


def htk_hz(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(sample_rate, n_freqs=N_FFT // 2 + 1, n_mels=N_MELS, f_min=0.0, f_max=None):
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = np.linspace(0, sample_rate / 2, n_freqs)
    pts = htk_hz(np.linspace(htk_mel(f_min), htk_mel(f_max), n_mels + 2))
    fb = np.zeros((n_freqs, n_mels))
    for m in range(n_mels):
        left, center, right = pts[m], pts[m + 1], pts[m + 2]
        rising = (freqs - left) / (center - left)
        falling = (right - freqs) / (right - center)
        fb[:, m] = np.clip(np.minimum(rising, falling), 0, None)
    return fb


def mel_features(iq, sample_rate, ref_db=REF_DB, scale_db=SCALE_DB, floor_db=FLOOR_DB):
    x = np.abs(iq).astype(np.float64)
    lead = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    pad = N_FFT // 2
    x = np.pad(x, ((0, 0), (pad, pad)), mode="reflect")
    n_frames = 1 + (x.shape[-1] - N_FFT) // HOP
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    starts = HOP * np.arange(n_frames)
    frames = x[:, starts[:, None] + np.arange(N_FFT)[None, :]] * window  # [N, T, n_fft]
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2  # [N, T, F]
    mel = power @ mel_filterbank(sample_rate)  # [N, T, M]
    db = np.maximum(10 * np.log10(np.maximum(mel, AMIN)), floor_db)
    feat = np.swapaxes((db - ref_db) / scale_db, -1, -2)  # [N, M, T]
    out = np.zeros(feat.shape[:-1] + (FRAMES,))
    t = min(FRAMES, feat.shape[-1])
    out[..., :t] = feat[..., :t]
    return out.reshape(lead + (N_MELS, FRAMES)).astype(np.float32)


def cmd_mel(path, sample_rate, out):
    feats = mel_features(np.load(path), float(sample_rate))
    np.save(out, feats)
    print(json.dumps({"shape": list(feats.shape)}))


def cmd_features_dir(directory, prefix):
    manifest = {}
    mpath = os.path.join(directory, "manifest.json")
    if os.path.exists(mpath):
        with open(mpath) as f:
            manifest = json.load(f)
    rate = float(manifest.get("sample_rate", 192000))
    ids = sorted(n[: -len("_iq.npy")] for n in os.listdir(directory) if n.endswith("_iq.npy"))
    xs, ys = [], []
    receivers = manifest.get("receivers", [])
    margin = manifest.get("margin_deg", 0.5)
    lats = [r["lat"] for r in receivers]
    lons = [r["lon"] for r in receivers]
    lat_c, lon_c = (min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2
    lat_h, lon_h = (max(lats) - min(lats)) / 2 + margin, (max(lons) - min(lons)) / 2 + margin
    for i in ids:
        iq = np.load(os.path.join(directory, i + "_iq.npy"))
        if iq.ndim == 1:
            iq = iq[None]
        xs.append(mel_features(iq, rate))
        lat, lon = np.load(os.path.join(directory, i + "_label.npy")).astype(np.float64)
        ys.append([(lat - lat_c) / lat_h, (lon - lon_c) / lon_h])
    np.save(prefix + "_x.npy", np.stack(xs))
    np.save(prefix + "_y.npy", np.asarray(ys, dtype=np.float32))
    print(json.dumps({"ids": ids, "normalization": [lat_c, lon_c, lat_h, lon_h]}))


def cmd_make_iq(out, kind, seed):
    rng = np.random.default_rng(int(seed))
    if kind == "tones7":  # 7 receivers at 192 kHz, 200 ms: AM tones + noise at different levels
        s = 38400
        t = np.arange(s) / 192000.0
        rows = []
        for r in range(7):
            amp = 10 ** (-(4 + r) / 2)  # −40 … −100 dBm-ish in √mW
            env = 1 + 0.3 * np.sin(2 * np.pi * (500 + 1700 * r) * t) + 0.1 * np.sin(2 * np.pi * 21000 * t)
            phase = rng.uniform(0, 2 * np.pi, s).cumsum() * 0.01
            noise = (rng.normal(size=s) + 1j * rng.normal(size=s)) * 1e-6
            rows.append(amp * env * np.exp(1j * phase) + noise)
        iq = np.asarray(rows, dtype=np.complex64)
    elif kind == "short1d":  # one receiver, 8000 samples → 16 frames, padded to 32
        s = 8000
        iq = ((rng.normal(size=s) + 1j * rng.normal(size=s)) * 1e-4).astype(np.complex64)
    elif kind == "real":  # a real-valued magnitude signal (float32), 3 channels
        iq = np.abs(rng.normal(size=(3, 20000))).astype(np.float32) * 1e-3
    else:
        raise SystemExit("unknown kind " + kind)
    np.save(out, iq)
    print(json.dumps({"shape": list(iq.shape), "dtype": str(iq.dtype)}))


def write_with_version(path, arr, version):
    with open(path, "wb") as f:
        np.lib.format.write_array(f, arr, version=version)


def cmd_make_npy(directory):
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(7)
    c = (rng.normal(size=(7, 300)) + 1j * rng.normal(size=(7, 300))).astype(np.complex64)
    f = rng.normal(size=(2,)).astype(np.float32)
    d = rng.normal(size=(4, 5)).astype(np.float64)
    files = {}

    def ok(name, arr, version=None):
        path = os.path.join(directory, name)
        if version is None:
            np.save(path, arr)
        else:
            write_with_version(path, arr, version)
        entry = {"descr": arr.dtype.str, "shape": list(arr.shape)}
        if np.iscomplexobj(arr):
            entry["sum"] = float(arr.real.astype(np.float64).sum())
            entry["sum_imag"] = float(arr.imag.astype(np.float64).sum())
        else:
            entry["sum"] = float(arr.astype(np.float64).sum())
        files[name] = entry

    ok("c8_v1.npy", c, (1, 0))
    ok("c8_v2.npy", c, (2, 0))
    ok("c8_v3.npy", c, (3, 0))
    ok("f4.npy", f)
    ok("f8.npy", d)
    ok("scalar_f4.npy", np.float32(2.5).reshape(()))
    ok("empty_f4.npy", np.zeros((0, 3), np.float32))
    # Broken ones.
    np.save(os.path.join(directory, "fortran.npy"), np.asfortranarray(rng.normal(size=(3, 4)).astype(np.float32)))
    np.save(os.path.join(directory, "int32.npy"), np.arange(6, dtype=np.int32))
    np.save(os.path.join(directory, "big_endian.npy"), np.arange(6, dtype=">f4"))
    np.save(os.path.join(directory, "c16.npy"), c.astype(np.complex128))
    full = os.path.join(directory, "c8_v1.npy")
    with open(full, "rb") as src:
        data = src.read()
    with open(os.path.join(directory, "truncated.npy"), "wb") as dst:
        dst.write(data[:-100])
    with open(os.path.join(directory, "trailing.npy"), "wb") as dst:
        dst.write(data + b"\0" * 8)
    with open(os.path.join(directory, "not_npy.npy"), "wb") as dst:
        dst.write(b"hello, this is not a numpy file at all")
    print(json.dumps({"ok": files}))


def haversine(a, b):
    a = np.radians(a.astype(np.float64))
    b = np.radians(b.astype(np.float64))
    dlat, dlon = b[..., 0] - a[..., 0], b[..., 1] - a[..., 1]
    h = np.sin(dlat / 2) ** 2 + np.cos(a[..., 0]) * np.cos(b[..., 0]) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(h))


def cmd_haversine(pa, pb):
    e = haversine(np.load(pa), np.load(pb))
    print(json.dumps({"errors": e.tolist(), "mean": float(e.mean()), "median": float(np.percentile(e, 50)),
                      "p68": float(np.percentile(e, 68)), "p95": float(np.percentile(e, 95))}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"mel": cmd_mel, "features-dir": cmd_features_dir, "make-iq": cmd_make_iq, "make-npy": cmd_make_npy,
     "haversine": cmd_haversine}[cmd](*args)
