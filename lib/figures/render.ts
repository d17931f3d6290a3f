// Vega-Lite spec → Vega → SVG (vega's headless renderer, no display, no browser) → PNG (resvg, a native SVG
// rasteriser) and the thumbnail MLflow's image grid shows (256 px on the longer side, WebP as `mlflow.log_image`
// writes it, through libwebp compiled to WebAssembly). The charting packages are loaded on first use.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { HeimdallError } from '../errors.js';
import { estimateTextWidth, FIGURE_FONT, type VegaLiteSpec } from './specs.js';

/** MLflow's thumbnail size: `mlflow.tracking.multimedia.COMPRESSED_IMAGE_SIZE`. */
export const COMPRESSED_IMAGE_SIZE = 256;

export interface RenderOptions {
  /** Pixels per SVG unit of the full-size PNG (default 2: sharp on high-density screens). */
  scale?: number;
  /** The thumbnail's longer side in pixels (default MLflow's 256). */
  thumbnailSize?: number;
}

export interface RenderedFigure {
  svg: string;
  /** The full-size PNG. */
  png: Buffer;
  width: number;
  height: number;
  /** The thumbnail: WebP (as MLflow writes it), or PNG where the WebP encoder cannot load. */
  thumbnail: { data: Buffer; format: 'webp' | 'png'; width: number; height: number };
}

type Vega = typeof import('vega');
type VegaLite = typeof import('vega-lite');
type Resvg = typeof import('@resvg/resvg-js');
type WebpEncode = (image: { data: Uint8ClampedArray; width: number; height: number; colorSpace?: string }, options?: { quality?: number }) => Promise<ArrayBuffer>;

interface Toolkit {
  vega: Vega;
  vegaLite: VegaLite;
  resvg: Resvg;
  webp: WebpEncode | null;
  fontDirs: string[];
}

let toolkit: Promise<Toolkit> | undefined;

/** Folders fonts are read from: the system's, plus HEIMDALL_FIGURE_FONT_DIR. */
function fontDirs(): string[] {
  const dirs = [process.env.HEIMDALL_FIGURE_FONT_DIR, '/usr/share/fonts', '/usr/local/share/fonts', join(homedir(), '.fonts'), join(homedir(), '.local/share/fonts')];
  return dirs.filter((d): d is string => Boolean(d && existsSync(d)));
}

function hasFontFile(dir: string, depth = 0): boolean {
  if (depth > 4) return false;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isFile() && /\.(ttf|otf|ttc)$/i.test(e.name)) return true;
    if (e.isDirectory() && hasFontFile(join(dir, e.name), depth + 1)) return true;
  }
  return false;
}

async function loadWebp(): Promise<WebpEncode | null> {
  try {
    const require = createRequire(import.meta.url);
    const mod = (await import('@jsquash/webp/encode.js')) as unknown as { default: WebpEncode; init: (module?: unknown, overrides?: object) => Promise<unknown> };
    // In Node the codec cannot fetch its .wasm itself: hand it the bytes. Node has WebAssembly SIMD, so the codec
    // picks its SIMD build; the plain build is the fallback.
    const codecDir = join(require.resolve('@jsquash/webp/encode.js'), '..', 'codec', 'enc');
    let lastError: unknown;
    for (const file of ['webp_enc_simd.wasm', 'webp_enc.wasm']) {
      try {
        await mod.init(undefined, { wasmBinary: readFileSync(join(codecDir, file)) });
        const probe = Buffer.from(await mod.default({ data: new Uint8ClampedArray(4 * 4 * 4).fill(255), width: 4, height: 4 }, { quality: 80 }));
        if (probe.subarray(0, 4).toString('latin1') === 'RIFF' && probe.subarray(8, 12).toString('latin1') === 'WEBP') return mod.default;
        lastError = new Error(`${file}: the encoder's output is not WebP`);
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError;
  } catch (err) {
    process.emitWarning(`heimdall-torch: the WebP encoder (@jsquash/webp) does not load (${(err as Error).message}); image thumbnails are written as PNG, which MLflow's UI shows too`, 'FigureWarning');
    return null;
  }
}

/** Vega's text measure (`textMetrics.width`, which Vega lets a renderer replace, as vl-convert does). */
function vegaTextWidth(item: { fontSize?: number | string; fontWeight?: string | number }, text: unknown): number {
  const size = item.fontSize != null ? Number(item.fontSize) || 0 : 11;
  const line = text == null ? '' : String(text).trim();
  const w = item.fontWeight;
  return estimateTextWidth(line, size, w === 'bold' || w === 'bolder' || Number(w) >= 600);
}

async function load(): Promise<Toolkit> {
  toolkit ??= (async () => {
    try {
      const [vega, vegaLite, resvg] = await Promise.all([import('vega'), import('vega-lite'), import('@resvg/resvg-js')]);
      (vega as unknown as { textMetrics: { width: typeof vegaTextWidth } }).textMetrics.width = vegaTextWidth;
      const dirs = fontDirs();
      if (!dirs.some((d) => hasFontFile(d))) {
        process.emitWarning('heimdall-torch: no TrueType/OpenType font found (looked in /usr/share/fonts, ~/.fonts, HEIMDALL_FIGURE_FONT_DIR): figures will have no text; install one (Debian: apt-get install fonts-dejavu-core)', 'FigureWarning');
      }
      return { vega, vegaLite, resvg, webp: await loadWebp(), fontDirs: dirs };
    } catch (err) {
      toolkit = undefined;
      throw new HeimdallError('HEIMDALL_NOT_FOUND', `figures need the packages vega, vega-lite and @resvg/resvg-js (npm install vega vega-lite @resvg/resvg-js): ${(err as Error).message}`, { cause: err });
    }
  })();
  return toolkit;
}

/** Vega-Lite → Vega → SVG, headless. Nothing is loaded from outside: the data is inline, and the loader refuses. */
export async function renderSvg(spec: VegaLiteSpec): Promise<string> {
  const { vega, vegaLite } = await load();
  const compiled = vegaLite.compile(spec as unknown as Parameters<VegaLite['compile']>[0]).spec;
  const loader = vega.loader();
  loader.load = async (uri: string) => {
    throw new HeimdallError('HEIMDALL_INVALID_ARGUMENT', `figure specs carry their data inline; refusing to load ${uri}`);
  };
  const view = new vega.View(vega.parse(compiled), { renderer: 'none', loader, logLevel: vega.Error });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Renders a Vega-Lite spec to SVG, a full-size PNG and MLflow's thumbnail. */
export async function renderFigure(spec: VegaLiteSpec, options: RenderOptions = {}): Promise<RenderedFigure> {
  const kit = await load();
  const svg = await renderSvg(spec);
  const font = { loadSystemFonts: false, fontDirs: kit.fontDirs, defaultFontFamily: FIGURE_FONT, sansSerifFamily: FIGURE_FONT };
  const full = new kit.resvg.Resvg(svg, { fitTo: { mode: 'zoom', value: options.scale ?? 2 }, font, background: 'white' }).render();
  const png = full.asPng();
  // Thumbnail as mlflow.tracking.multimedia.compress_image_size: the longer side to 256, the other int(side · ratio).
  const size = options.thumbnailSize ?? COMPRESSED_IMAGE_SIZE;
  const landscape = full.width > full.height;
  const fitTo = landscape ? { mode: 'width' as const, value: size } : { mode: 'height' as const, value: size };
  const small = new kit.resvg.Resvg(svg, { fitTo, font, background: 'white' }).render();
  let thumbnail: RenderedFigure['thumbnail'];
  if (kit.webp) {
    const data = new Uint8ClampedArray(small.pixels.buffer, small.pixels.byteOffset, small.pixels.byteLength);
    const webp = await kit.webp({ data, width: small.width, height: small.height, colorSpace: 'srgb' }, { quality: 80 });
    thumbnail = { data: Buffer.from(webp), format: 'webp', width: small.width, height: small.height };
  } else {
    thumbnail = { data: small.asPng(), format: 'png', width: small.width, height: small.height };
  }
  return { svg, png, width: full.width, height: full.height, thumbnail };
}
