// Figures as MLflow logs them: `mlflow.log_image(image, key=…, step=…)` in the pinned mlflow
// (tracking/client.py) writes
//   images/<key, '/' → '~'>+step+<step>+timestamp+<ms>+<uuid4>.png            the full image
//   images/<same stem>+compressed.webp                                      the thumbnail, longer side 256 px
// and sets the run tag `mlflow.loggedImages` = "True", which makes the run page's charts offer the images
// (the UI lists `images/` and parses these names). Here the same files, and the figure itself as plain
// artifacts under `figures/` (PNG, SVG and the Vega-Lite spec) for reports outside MLflow.
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HeimdallError } from '../errors.js';
import { renderFigure, type RenderOptions } from './render.js';
import type { VegaLiteSpec } from './specs.js';

/** The run tag `mlflow.log_image` sets (`mlflow.utils.mlflow_tags.MLFLOW_LOGGED_IMAGES`), with its value `str(True)`. */
export const LOGGED_IMAGES_TAG = 'mlflow.loggedImages';
export const LOGGED_IMAGES_VALUE = 'True';
/** The artifact folders: MLflow's images, and the plain figures. */
export const IMAGES_ARTIFACT_PATH = 'images';
export const FIGURES_ARTIFACT_PATH = 'figures';

const KEY = /^[a-zA-Z0-9_\-./ ]+$/;

/** `<key with / as ~>+step+<step>+timestamp+<ms>+<uuid>`, refusing keys `log_image` refuses. */
export function imageFileStem(key: string, step: number, timestamp: number, uuid: string = randomUUID()): string {
  if (!KEY.test(key)) {
    throw new HeimdallError('HEIMDALL_INVALID_ARGUMENT', `image key '${key}' may only contain letters, digits, _ - . / and spaces (as mlflow.log_image requires)`, { option: 'key' });
  }
  if (!Number.isSafeInteger(step) || !Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw new HeimdallError('HEIMDALL_INVALID_ARGUMENT', `image '${key}': step (${step}) and timestamp (${timestamp}) must be integers, the timestamp in ms ≥ 0`);
  }
  return `${key.replace(/\//g, '~')}+step+${step}+timestamp+${timestamp}+${uuid}`;
}

export interface FigureRequest {
  /** File name of the plain artifacts (`figures/<name>.png`, `.svg`, `.vl.json`). */
  name: string;
  /** The image key in MLflow (`test/position_map`): the UI groups images by it. */
  key: string;
  spec: VegaLiteSpec;
}

export interface WrittenFigure {
  name: string;
  key: string;
  /** Local files: the plain figure (png, svg, spec) and the two MLflow image files. */
  png: string;
  svg: string;
  spec: string;
  image: string;
  thumbnail: string;
  width: number;
  height: number;
}

export interface WriteFiguresResult {
  written: WrittenFigure[];
  /** Figures that could not be rendered, with why (the others are written). */
  failed: Array<{ name: string; error: Error }>;
}

/**
 * Renders each figure and writes `<dir>/<name>.{png,svg,vl.json}` and the MLflow image files under
 * `<dir>/mlflow-images/`. A figure that fails is reported in `failed`; the others are still written.
 */
export async function writeFigures(
  figures: readonly FigureRequest[],
  options: { dir: string; step: number; timestamp?: number } & RenderOptions,
): Promise<WriteFiguresResult> {
  const { dir, step, timestamp = Date.now(), ...render } = options;
  const imagesDir = join(dir, 'mlflow-images');
  const result: WriteFiguresResult = { written: [], failed: [] };
  for (const f of figures) {
    try {
      const stem = imageFileStem(f.key, step, Math.trunc(timestamp));
      const r = await renderFigure(f.spec, render);
      mkdirSync(imagesDir, { recursive: true });
      const out: WrittenFigure = {
        name: f.name, key: f.key, width: r.width, height: r.height,
        png: join(dir, `${f.name}.png`), svg: join(dir, `${f.name}.svg`), spec: join(dir, `${f.name}.vl.json`),
        image: join(imagesDir, `${stem}.png`), thumbnail: join(imagesDir, `${stem}+compressed.${r.thumbnail.format}`),
      };
      writeFileSync(out.png, r.png);
      writeFileSync(out.svg, r.svg);
      writeFileSync(out.spec, `${JSON.stringify(f.spec, null, 1)}\n`);
      writeFileSync(out.image, r.png);
      writeFileSync(out.thumbnail, r.thumbnail.data);
      result.written.push(out);
    } catch (err) {
      result.failed.push({ name: f.name, error: err instanceof Error ? err : new Error(String(err)) });
    }
  }
  return result;
}

/** What logging needs of a tracker (an MLflowTracker is one). */
export interface FigureSink {
  logArtifact(localPath: string, artifactPath?: string): void;
  setTags(tags: Record<string, string>): void;
}

/** Logs written figures: the plain files under `figures/`, the images under `images/`, and the run tag. */
export function logWrittenFigures(tracker: FigureSink, written: readonly WrittenFigure[]): void {
  if (!written.length) return;
  for (const w of written) {
    for (const file of [w.png, w.svg, w.spec]) tracker.logArtifact(file, FIGURES_ARTIFACT_PATH);
    tracker.logArtifact(w.image, IMAGES_ARTIFACT_PATH);
    tracker.logArtifact(w.thumbnail, IMAGES_ARTIFACT_PATH);
  }
  tracker.setTags({ [LOGGED_IMAGES_TAG]: LOGGED_IMAGES_VALUE });
}
