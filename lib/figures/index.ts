// Figures: Vega-Lite specs of a training's results (specs.ts), rendered headless to SVG, PNG and MLflow's
// thumbnail (render.ts), written and logged as MLflow images and plain artifacts (mlflow_images.ts).
export * from './specs.js';
export { renderFigure, renderSvg, COMPRESSED_IMAGE_SIZE } from './render.js';
export type { RenderOptions, RenderedFigure } from './render.js';
export * from './mlflow_images.js';
