// Floating-point operations of a ConvNeXt (V1/V2) with its head, per sample, from its weight shapes and the input
// size — counted as PyTorch's FlopCounterMode counts them (what Lightning's ThroughputMonitor and `measure_flops`
// use): 2·M·N·K for every convolution and matrix product, nothing for norms, activations, biases or GRN.
import type { ConvNeXt } from '../model.js';

export interface FlopCount {
  /** One forward pass, per sample. */
  forward: number;
  /**
   * Forward and backward, per sample: the backward pass counts each product twice (gradient of the input and of the
   * weight), except the stem's input gradient, which is not needed (the input does not require one).
   */
  training: number;
}

/** FLOPs per sample of `model` on inputs [C, H, W]; frozen parameters are counted as trainable. */
export function flopsPerSample(model: ConvNeXt, inputShape: readonly number[]): FlopCount {
  return countFlops(model.native.stateDictShapes(), inputShape);
}

export function countFlops(shapes: Record<string, number[]>, inputShape: readonly number[]): FlopCount {
  if (inputShape.length !== 3) throw new Error(`flops: the input shape must be [C, H, W], got [${inputShape.join(', ')}]`);
  const stem = shapes['stem.0.weight'];
  if (!stem || stem.length !== 4) throw new Error('flops: no stem convolution (stem.0.weight): not a ConvNeXt');
  // Patchify stem (kernel = stride), then each stage from 1 on halves the size (downsample: kernel 2, stride 2).
  const spatial: number[] = [];
  let [h, w] = [Math.floor(inputShape[1]! / stem[2]!), Math.floor(inputShape[2]! / stem[3]!)];
  for (let i = 0; ; i++) {
    if (!Object.keys(shapes).some((k) => k.startsWith(`stages.${i}.`))) break;
    const down = shapes[`stages.${i}.downsample.1.weight`];
    if (down) [h, w] = [Math.floor(h / down[2]!), Math.floor(w / down[3]!)];
    spatial.push(h * w);
  }
  const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);
  const stemFlops = 2 * numel(stem) * Math.floor(inputShape[1]! / stem[2]!) * Math.floor(inputShape[2]! / stem[3]!);
  let forward = stemFlops;
  for (const [name, shape] of Object.entries(shapes)) {
    if (!name.endsWith('.weight') || name === 'stem.0.weight') continue;
    const stage = /^stages\.(\d+)\./.exec(name);
    if (shape.length === 4) {
      // convolutions: the downsample's output and the depthwise conv's (same size) are the stage's spatial size
      if (!stage) throw new Error(`flops: a convolution outside the stages: ${name}`);
      forward += 2 * numel(shape) * spatial[Number(stage[1])]!;
    } else if (shape.length === 2) {
      // linear layers: over every position inside a stage (the blocks' MLPs), once per sample in the heads
      forward += 2 * numel(shape) * (stage ? spatial[Number(stage[1])]! : 1);
    }
  }
  return { forward, training: 3 * forward - stemFlops };
}
