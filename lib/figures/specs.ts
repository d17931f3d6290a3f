// Figures as Vega-Lite specs: plain data in, a spec with its data inlined out. Nothing here renders (render.ts
// does), so a spec can be checked, logged as JSON, or opened in any Vega-Lite editor as it is.
// Every figure has a title, axes with units, a legend where there is more than one series, and fonts sized to
// stay readable in MLflow's image grid (thumbnails of 256 px on their longer side).
import { haversineM } from '../data/heimdall.js';

/** A Vega-Lite spec (the top-level JSON object); typed loosely so that this module needs no charting package. */
export type VegaLiteSpec = { $schema: string; title: { text: string; subtitle?: string | string[] } } & Record<string, unknown>;

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

/** Shared look: white background, DejaVu Sans (the font rendering falls back to), sizes readable when shrunk. */
export const FIGURE_FONT = 'DejaVu Sans';
const config = {
  font: FIGURE_FONT,
  background: 'white',
  padding: 12,
  title: { fontSize: 22, subtitleFontSize: 15, subtitleColor: '#444', anchor: 'start', offset: 12 },
  axis: { labelFontSize: 15, titleFontSize: 17, titlePadding: 10, gridColor: '#e6e6e6' },
  legend: { labelFontSize: 15, titleFontSize: 15, symbolSize: 160, labelLimit: 360 },
  view: { stroke: '#bbb' },
};

/** Colours (colour-blind safe, Tableau 10): model, reference/truth, baseline, accents. */
const C = { model: '#e15759', truth: '#4e79a7', baseline: '#7f7f7f', receiver: '#222222', ellipse: '#f28e2b', error: '#9c9c9c', lr: '#59a14f' };

/**
 * Text width in pixels for layout. Without a canvas Vega guesses 0.8 em per character, which makes every figure
 * far wider than its text; render.ts gives Vega this instead (Vega's `textMetrics.width`, which vl-convert sets
 * too). Advances by character class, in em, like DejaVu Sans: within ~10 %, and the same on every machine.
 */
export function estimateTextWidth(text: string, fontSize: number, bold = false): number {
  let em = 0;
  for (const ch of text) {
    if (ch === ' ') em += 0.32;
    else if ("iljI.,:;|!'`".includes(ch)) em += 0.28;
    else if ('frt()[]{}/\\-'.includes(ch)) em += 0.4;
    else if ('mwMW%@'.includes(ch)) em += 0.92;
    else if (/[A-Z]/.test(ch)) em += 0.7;
    else if (/[0-9]/.test(ch)) em += 0.64;
    else em += 0.6;
  }
  return em * fontSize * (bold ? 1.1 : 1);
}

function top(title: string, subtitle: string | undefined, body: Record<string, unknown>): VegaLiteSpec {
  return { $schema: SCHEMA, title: subtitle ? { text: title, subtitle } : { text: title }, config, ...body } as VegaLiteSpec;
}

function fmt(x: number, digits = 1): string {
  return Number.isFinite(x) ? x.toFixed(digits) : String(x);
}

// ---- training curves ---------------------------------------------------------------------------------------

export interface EpochPoint {
  epoch: number;
  trainLoss?: number;
  valLoss?: number;
  /** The learning rate at the end of the epoch. */
  lr?: number;
}

/** Loss (train and validation) and learning rate per epoch, side by side. */
export function trainingCurvesSpec(epochs: readonly EpochPoint[], options: { lossName?: string } = {}): VegaLiteSpec {
  const loss: Array<{ epoch: number; split: string; loss: number }> = [];
  const lr: Array<{ epoch: number; lr: number }> = [];
  for (const e of epochs) {
    if (Number.isFinite(e.trainLoss)) loss.push({ epoch: e.epoch, split: 'train', loss: e.trainLoss! });
    if (Number.isFinite(e.valLoss)) loss.push({ epoch: e.epoch, split: 'validation', loss: e.valLoss! });
    if (Number.isFinite(e.lr)) lr.push({ epoch: e.epoch, lr: e.lr! });
  }
  const best = epochs.filter((e) => Number.isFinite(e.valLoss)).reduce<EpochPoint | undefined>((b, e) => (!b || e.valLoss! < b.valLoss! ? e : b), undefined);
  const lastEpoch = epochs.length ? epochs[epochs.length - 1]!.epoch : 0;
  const epochAxis = { title: 'epoch', tickMinStep: 1, format: 'd' };
  const epochScale = { domain: [0, Math.max(1, lastEpoch)], nice: false };
  return top(
    `Training: loss and learning rate per epoch`,
    best ? `best validation loss ${best.valLoss!.toPrecision(4)} at epoch ${best.epoch} · ${epochs.length} epoch(s)` : `${epochs.length} epoch(s)`,
    {
      hconcat: [
        {
          width: 380, height: 300,
          title: { text: 'loss', fontSize: 16, anchor: 'middle' },
          data: { name: 'loss', values: loss },
          mark: { type: 'line', point: { size: 60 }, strokeWidth: 3 },
          encoding: {
            x: { field: 'epoch', type: 'quantitative', axis: epochAxis, scale: epochScale },
            y: { field: 'loss', type: 'quantitative', title: options.lossName ?? 'loss', scale: { zero: false } },
            color: { field: 'split', type: 'nominal', title: null, scale: { domain: ['train', 'validation'], range: [C.truth, C.model] }, legend: { orient: 'top-right', fillColor: 'white' } },
          },
        },
        {
          width: 260, height: 300,
          title: { text: 'learning rate', fontSize: 16, anchor: 'middle' },
          data: { name: 'lr', values: lr },
          mark: { type: 'line', point: { size: 60, filled: true, color: C.lr }, strokeWidth: 3, color: C.lr },
          encoding: {
            x: { field: 'epoch', type: 'quantitative', axis: epochAxis, scale: epochScale },
            y: { field: 'lr', type: 'quantitative', title: 'learning rate', axis: { format: '.1e' } },
          },
        },
      ],
      resolve: { scale: { color: 'independent' } },
    },
  );
}

// ---- localization ------------------------------------------------------------------------------------------

export interface ReceiverPoint {
  name: string;
  lat: number;
  lon: number;
}

export interface LocalizationFigureData {
  /** True positions, degrees: [lat, lon] per sample. */
  truth: ReadonlyArray<readonly [number, number]>;
  /** Predicted positions, degrees. */
  predicted: ReadonlyArray<readonly [number, number]>;
  /** The model's σ per sample in degrees ([σlat, σlon]); NaN or absent → no ellipse. */
  sigma?: ReadonlyArray<readonly [number, number]>;
  receivers?: readonly ReceiverPoint[];
  /** The number of test samples when only the first ones are drawn (the title says "n of total"). */
  total?: number;
}

/** Points of the 1σ ellipse around (lat, lon), axis-aligned (the model predicts independent σlat, σlon). */
export function ellipsePoints(lat: number, lon: number, sLat: number, sLon: number, n = 36): Array<{ lat: number; lon: number; k: number }> {
  const out: Array<{ lat: number; lon: number; k: number }> = [];
  for (let k = 0; k <= n; k++) {
    const t = (2 * Math.PI * k) / n;
    out.push({ lat: lat + sLat * Math.sin(t), lon: lon + sLon * Math.cos(t), k });
  }
  return out;
}

/**
 * The map of the test transmitters: each true position joined to its prediction by an error line, the model's
 * 1σ ellipse around the prediction, the receivers as triangles. Equal distances look equal (the plot's aspect
 * follows cos(latitude)).
 */
export function localizationMapSpec(d: LocalizationFigureData): VegaLiteSpec {
  const n = Math.min(d.truth.length, d.predicted.length);
  const points: Array<{ id: number; kind: string; lat: number; lon: number }> = [];
  const lines: Array<{ id: number; lat: number; lon: number; lat2: number; lon2: number; error_km: number }> = [];
  const ellipses: Array<{ id: number; k: number; lat: number; lon: number }> = [];
  let errSum = 0;
  for (let i = 0; i < n; i++) {
    const [tl, tn] = d.truth[i]!;
    const [pl, pn] = d.predicted[i]!;
    const km = haversineM(tl, tn, pl, pn) / 1000;
    errSum += km;
    points.push({ id: i, kind: 'true position', lat: tl, lon: tn }, { id: i, kind: 'predicted', lat: pl, lon: pn });
    lines.push({ id: i, lat: tl, lon: tn, lat2: pl, lon2: pn, error_km: Math.round(km * 100) / 100 });
    const s = d.sigma?.[i];
    if (s && Number.isFinite(s[0]) && Number.isFinite(s[1])) for (const p of ellipsePoints(pl, pn, s[0], s[1])) ellipses.push({ id: i, ...p });
  }
  const receivers = (d.receivers ?? []).map((r) => ({ kind: 'receiver', name: r.name, lat: r.lat, lon: r.lon }));
  // The view spans the points and receivers (not the ellipses, which may be wide), with a 6 % margin.
  const lats = [...points.map((p) => p.lat), ...receivers.map((r) => r.lat)];
  const lons = [...points.map((p) => p.lon), ...receivers.map((r) => r.lon)];
  let [lat0, lat1] = [Math.min(...lats), Math.max(...lats)];
  let [lon0, lon1] = [Math.min(...lons), Math.max(...lons)];
  if (!Number.isFinite(lat0)) [lat0, lat1, lon0, lon1] = [0, 1, 0, 1];
  const midLat = (lat0 + lat1) / 2;
  const kx = Math.max(0.1, Math.cos((midLat * Math.PI) / 180)); // km per degree of longitude / km per degree of latitude
  const padLat = Math.max(0.05, (lat1 - lat0) * 0.06);
  const padLon = Math.max(0.05, (lon1 - lon0) * 0.06);
  lat0 -= padLat; lat1 += padLat; lon0 -= padLon; lon1 += padLon;
  // Keep 1 km the same length both ways: widen the shorter span until the plot is between 3:7 and 3:2 tall:wide.
  const width = 620;
  let height = (width * (lat1 - lat0)) / ((lon1 - lon0) * kx);
  if (height > 900) {
    const grow = ((lat1 - lat0) * width) / (900 * kx) - (lon1 - lon0);
    lon0 -= grow / 2; lon1 += grow / 2; height = 900;
  } else if (height < 270) {
    const grow = (270 * (lon1 - lon0) * kx) / width - (lat1 - lat0);
    lat0 -= grow / 2; lat1 += grow / 2; height = 270;
  }
  height = Math.round(height);
  const labels = placeLabels(receivers, { lat0, lat1, lon0, lon1, width, height }, 14);
  const x = { field: 'lon', type: 'quantitative', title: 'longitude (°E)', scale: { domain: [lon0, lon1], nice: false, zero: false } };
  const y = { field: 'lat', type: 'quantitative', title: 'latitude (°N)', scale: { domain: [lat0, lat1], nice: false, zero: false } };
  const kinds = ['true position', 'predicted', '1σ ellipse', 'error', 'receiver'];
  const colors = [C.truth, C.model, C.ellipse, C.error, C.receiver];
  const shapes = ['circle', 'diamond', 'stroke', 'stroke', 'triangle-up'];
  const legendScale = { domain: kinds, range: colors };
  const color = { field: 'kind', type: 'nominal', title: null, scale: legendScale, legend: { orient: 'bottom', direction: 'horizontal', symbolStrokeWidth: 3, symbolOpacity: 1 } };
  const shape = { field: 'kind', type: 'nominal', title: null, scale: { domain: kinds, range: shapes } };
  const meanKm = n ? errSum / n : NaN;
  return top(
    `Test transmitters: predicted vs true (${d.total && d.total > n ? `first ${n} of ${d.total}` : `n = ${n}`})`,
    `mean error ${fmt(meanKm)} km${d.total && d.total > n ? ' (of those shown)' : ''} · lines join each true position to its prediction · ellipses: the model's 1σ`,
    {
      width, height,
      layer: [
        {
          data: { name: 'ellipses', values: ellipses },
          transform: [{ calculate: "'1σ ellipse'", as: 'kind' }],
          mark: { type: 'line', clip: true, strokeWidth: 1.2, opacity: 0.4, interpolate: 'linear' },
          encoding: { x, y, detail: { field: 'id' }, order: { field: 'k', type: 'quantitative' }, color },
        },
        {
          data: { name: 'errors', values: lines },
          transform: [{ calculate: "'error'", as: 'kind' }],
          mark: { type: 'rule', clip: true, strokeWidth: 1.2, opacity: 0.8 },
          encoding: { x, y, x2: { field: 'lon2' }, y2: { field: 'lat2' }, color },
        },
        {
          data: { name: 'positions', values: points },
          mark: { type: 'point', filled: true, size: 55, opacity: 0.9, clip: true },
          encoding: { x, y, color, shape },
        },
        {
          data: { name: 'receivers', values: receivers },
          mark: { type: 'point', filled: true, size: 260, stroke: 'white', strokeWidth: 1.5 },
          encoding: { x, y, color, shape },
        },
        ...(['left', 'center', 'right'] as const).map((align) => ({
          data: { values: labels.filter((l) => l.align === align) },
          mark: { type: 'text', align, baseline: 'middle', fontSize: 14, fontWeight: 'bold', color: C.receiver, clip: true },
          encoding: { x: { ...x, field: 'label_lon' }, y: { ...y, field: 'label_lat' }, text: { field: 'name' } },
        })),
      ],
    },
  );
}

/**
 * Places each receiver's name next to its marker (above, below, right or left: the first that stays inside the
 * plot and clear of the names and markers placed so far), as data coordinates of the text's anchor.
 */
function placeLabels(
  points: ReadonlyArray<{ name: string; lat: number; lon: number }>,
  v: { lat0: number; lat1: number; lon0: number; lon1: number; width: number; height: number },
  fontSize: number,
): Array<{ name: string; label_lat: number; label_lon: number; align: 'left' | 'center' | 'right' }> {
  type Box = [number, number, number, number]; // x0, y0, x1, y1 in pixels
  const px = (lon: number) => ((lon - v.lon0) / (v.lon1 - v.lon0)) * v.width;
  const py = (lat: number) => ((v.lat1 - lat) / (v.lat1 - v.lat0)) * v.height;
  const taken: Box[] = points.map((p) => [px(p.lon) - 9, py(p.lat) - 9, px(p.lon) + 9, py(p.lat) + 9]);
  const overlaps = (a: Box) => taken.some((b) => a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3]);
  const out: Array<{ name: string; label_lat: number; label_lon: number; align: 'left' | 'center' | 'right' }> = [];
  for (const p of points) {
    const [x0, y0] = [px(p.lon), py(p.lat)];
    const w = estimateTextWidth(p.name, fontSize, true);
    const h = fontSize + 2;
    const candidates: Array<{ x: number; y: number; align: 'left' | 'center' | 'right'; box: Box }> = [
      { x: x0, y: y0 - 17, align: 'center', box: [x0 - w / 2, y0 - 17 - h / 2, x0 + w / 2, y0 - 17 + h / 2] },
      { x: x0, y: y0 + 18, align: 'center', box: [x0 - w / 2, y0 + 18 - h / 2, x0 + w / 2, y0 + 18 + h / 2] },
      { x: x0 + 13, y: y0, align: 'left', box: [x0 + 13, y0 - h / 2, x0 + 13 + w, y0 + h / 2] },
      { x: x0 - 13, y: y0, align: 'right', box: [x0 - 13 - w, y0 - h / 2, x0 - 13, y0 + h / 2] },
    ];
    const inside = (b: Box) => b[0] >= 0 && b[1] >= 0 && b[2] <= v.width && b[3] <= v.height;
    const c = candidates.find((k) => inside(k.box) && !overlaps(k.box)) ?? candidates.find((k) => inside(k.box)) ?? candidates[0]!;
    taken.push(c.box);
    out.push({
      name: p.name, align: c.align,
      label_lon: v.lon0 + (c.x / v.width) * (v.lon1 - v.lon0),
      label_lat: v.lat1 - (c.y / v.height) * (v.lat1 - v.lat0),
    });
  }
  return out;
}

/** The empirical CDF of `values` as step points: (0, 0), then (x_i, i/n) for the sorted values. */
export function cdfPoints(values: ArrayLike<number>): Array<{ x: number; fraction: number }> {
  const s = Array.from(values).filter(Number.isFinite).sort((a, b) => a - b);
  const n = s.length;
  const out = [{ x: 0, fraction: 0 }];
  s.forEach((x, i) => out.push({ x, fraction: (i + 1) / n }));
  return out;
}

function median(values: readonly number[]): number {
  const s = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = (s.length - 1) / 2;
  return (s[Math.floor(m)]! + s[Math.ceil(m)]!) / 2;
}

/** The fraction of test transmitters located within x km, for the model and for the centroid baseline. */
export function errorCdfSpec(d: { modelKm: readonly number[]; baselineKm?: readonly number[] }): VegaLiteSpec {
  const mean = (v: readonly number[]) => v.reduce((a, b) => a + b, 0) / v.length;
  const series: Array<{ name: string; values: readonly number[] }> = [{ name: `model (median ${fmt(median(d.modelKm))} km)`, values: d.modelKm }];
  if (d.baselineKm?.length) series.push({ name: `centroid baseline (median ${fmt(median(d.baselineKm))} km)`, values: d.baselineKm });
  const rows = series.flatMap((s) => cdfPoints(s.values).map((p) => ({ series: s.name, error_km: p.x, fraction: p.fraction })));
  const ratio = d.baselineKm?.length ? mean(d.baselineKm) / mean(d.modelKm) : NaN;
  return top(
    'Position error on the test split (CDF)',
    d.baselineKm?.length
      ? `mean ${fmt(mean(d.modelKm))} km vs ${fmt(mean(d.baselineKm))} km for always answering the training centroid (${fmt(ratio, 2)}× better)`
      : `mean ${fmt(mean(d.modelKm))} km over ${d.modelKm.length} transmitters`,
    {
      width: 620, height: 380,
      data: { name: 'cdf', values: rows },
      mark: { type: 'line', interpolate: 'step-after', strokeWidth: 3 },
      encoding: {
        x: { field: 'error_km', type: 'quantitative', title: 'position error (km)', scale: { zero: true, nice: true } },
        y: { field: 'fraction', type: 'quantitative', title: 'fraction of test transmitters within', scale: { domain: [0, 1] }, axis: { format: '.0%' } },
        color: { field: 'series', type: 'nominal', title: null, scale: { domain: series.map((s) => s.name), range: [C.model, C.baseline] }, legend: { orient: 'bottom-right', fillColor: 'white', padding: 6 } },
      },
    },
  );
}

// ---- classification / regression -----------------------------------------------------------------------------

/** counts[t][p]: test samples of true class t predicted as p. */
export function confusionCounts(trueClasses: ArrayLike<number>, predicted: ArrayLike<number>, classes: number): number[][] {
  const m = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  for (let i = 0; i < Math.min(trueClasses.length, predicted.length); i++) {
    const t = trueClasses[i]!;
    const p = predicted[i]!;
    if (t >= 0 && t < classes && p >= 0 && p < classes) m[t]![p]!++;
  }
  return m;
}

export function confusionMatrixSpec(d: { counts: readonly (readonly number[])[]; labels?: readonly string[] }): VegaLiteSpec {
  const k = d.counts.length;
  const labels = d.labels ?? Array.from({ length: k }, (_, i) => String(i));
  const cells: Array<{ true_class: string; predicted_class: string; count: number; share: number }> = [];
  let total = 0;
  let correct = 0;
  for (let t = 0; t < k; t++) {
    const rowSum = d.counts[t]!.reduce((a, b) => a + b, 0);
    for (let p = 0; p < k; p++) {
      const c = d.counts[t]![p]!;
      total += c;
      if (t === p) correct += c;
      cells.push({ true_class: labels[t]!, predicted_class: labels[p]!, count: c, share: rowSum ? c / rowSum : 0 });
    }
  }
  const side = Math.min(620, Math.max(240, 60 * k));
  const axis = (title: string) => ({ field: title === 'true class' ? 'true_class' : 'predicted_class', type: 'ordinal', title, sort: labels, axis: { labelAngle: 0 } });
  return top(
    'Confusion matrix (test split)',
    `accuracy ${total ? fmt((100 * correct) / total) : 'n/a'} % over ${total} samples · colour: share of the true class`,
    {
      width: side, height: side,
      data: { name: 'cells', values: cells },
      encoding: { x: axis('predicted class'), y: axis('true class') },
      layer: [
        { mark: { type: 'rect' }, encoding: { color: { field: 'share', type: 'quantitative', title: 'share of row', scale: { scheme: 'blues', domain: [0, 1] }, legend: { format: '.0%', gradientLength: 200 } } } },
        {
          mark: { type: 'text', fontSize: k > 12 ? 11 : 17, fontWeight: 'bold' },
          encoding: { text: { field: 'count', type: 'quantitative' }, color: { condition: { test: 'datum.share > 0.55', value: 'white' }, value: '#222' } },
        },
      ],
    },
  );
}

/** Predicted against true values per regression output, with the y = x line; one panel per output. */
export function predictedVsTrueSpec(d: { truth: readonly (readonly number[])[]; predicted: readonly (readonly number[])[]; names?: readonly string[]; unit?: string }): VegaLiteSpec {
  const k = d.truth[0]?.length ?? 1;
  const names = d.names ?? Array.from({ length: k }, (_, j) => (k === 1 ? 'output' : `output ${j}`));
  const rows: Array<{ output: string; truth: number; predicted: number }> = [];
  const stats: string[] = [];
  for (let j = 0; j < k; j++) {
    let se = 0;
    let ae = 0;
    let mean = 0;
    const n = Math.min(d.truth.length, d.predicted.length);
    for (let i = 0; i < n; i++) mean += d.truth[i]![j]! / n;
    let ss = 0;
    for (let i = 0; i < n; i++) {
      const t = d.truth[i]![j]!;
      const p = d.predicted[i]![j]!;
      rows.push({ output: names[j]!, truth: t, predicted: p });
      se += (p - t) ** 2;
      ae += Math.abs(p - t);
      ss += (t - mean) ** 2;
    }
    stats.push(`${names[j]}: MAE ${(ae / n).toPrecision(3)}, R² ${ss > 0 ? fmt(1 - se / ss, 3) : 'n/a'}`);
  }
  const all = rows.flatMap((r) => [r.truth, r.predicted]);
  const lo = Math.min(...all);
  const hi = Math.max(...all);
  const pad = (hi - lo || 1) * 0.05;
  const domain = [lo - pad, hi + pad];
  const unit = d.unit ? ` (${d.unit})` : '';
  const panel = {
    width: 340, height: 340,
    layer: [
      {
        data: { values: [{ a: domain[0], b: domain[1] }] },
        mark: { type: 'rule', strokeDash: [6, 4], color: C.baseline, strokeWidth: 2 },
        encoding: { x: { field: 'a', type: 'quantitative' }, y: { field: 'a', type: 'quantitative' }, x2: { field: 'b' }, y2: { field: 'b' } },
      },
      {
        mark: { type: 'point', filled: true, size: 50, opacity: 0.7, color: C.model },
        encoding: {
          x: { field: 'truth', type: 'quantitative', title: `true${unit}`, scale: { domain, nice: false } },
          y: { field: 'predicted', type: 'quantitative', title: `predicted${unit}`, scale: { domain, nice: false } },
        },
      },
    ],
  };
  return top('Predicted vs true (test split)', `${stats.join(' · ')} · dashed: y = x`, {
    data: { name: 'points', values: rows },
    facet: { field: 'output', type: 'nominal', title: null, header: { labelFontSize: 16 }, sort: names },
    columns: Math.min(k, 3),
    spec: panel,
  });
}
