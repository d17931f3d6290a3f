// ConvNeXt models (V1 `convnext_*`, V2 `convnextv2_*`) for the Trainer: a thin typed facade over the native Model
// (native/model; the families and their variants come from its registry).
import { native, type HeadKind, type NativeModel, type NativeModelOptions, type WeightsReport } from './native.js';

export interface ConvNeXtOptions {
  /** Input channels (Heimdall: one per receiver, 7; images: 3). */
  inChans?: number;
  /** Stochastic depth rate, linear over the blocks. */
  dropPathRate?: number;
  /** Layer scale γ init (timm: 1e-6; ConvNeXt V2 has no layer scale and ignores it). */
  layerScaleInit?: number;
  /** Train the head only. */
  freezeBackbone?: boolean;
  /** A safetensors file with timm-named weights: the backbone must fit; the head may be absent. */
  pretrained?: string;
  /** Seeds the weight initialisation. */
  seed?: number;
  /** Localization: uncertainty clamp [sigmaMin, sigmaMax] (reference: 0.01 … 1.0). */
  sigmaMin?: number;
  sigmaMax?: number;
  /** Localization: dropout of the position and uncertainty MLPs (128 → 64 → 2), one rate or one per hidden layer
   *  (reference: [0.3, 0.2]). Train-time only; the architecture and the weights' shapes do not change. */
  headDropout?: number | [number, number];
}

export interface ConvNeXtCreateOptions extends ConvNeXtOptions {
  /** Default convnext_atto. */
  variant?: string;
  /** Default localization. */
  head?: HeadKind;
  /** Classes (classification) or outputs (regression). */
  outputs?: number;
}

export class ConvNeXt {
  readonly native: NativeModel;
  readonly options: NativeModelOptions & { pretrained?: string };
  private pretrainedLoaded: Promise<WeightsReport | null>;

  private constructor(options: NativeModelOptions & { pretrained?: string }, built?: NativeModel) {
    const { pretrained, ...rest } = options;
    this.options = options;
    this.native = built ?? new (native().Model)(rest);
    this.pretrainedLoaded = pretrained ? this.native.loadWeights(pretrained, { strict: false }) : Promise.resolve(null);
    this.pretrainedLoaded.catch(() => undefined); // surfaced by ready()
  }

  /** Backbone + position and uncertainty heads (Gaussian NLL), the Heimdall model. */
  static localization(variant = 'convnext_atto', options: ConvNeXtOptions = {}): ConvNeXt {
    return new ConvNeXt({ ...options, variant, head: 'localization' });
  }
  static classification(variant: string, classes: number, options: ConvNeXtOptions = {}): ConvNeXt {
    return new ConvNeXt({ ...options, variant, head: 'classification', outputs: classes });
  }
  static regression(variant: string, outputs: number, options: ConvNeXtOptions = {}): ConvNeXt {
    return new ConvNeXt({ ...options, variant, head: 'regression', outputs });
  }
  /**
   * The same models as `localization` / `classification` / `regression`, but the weights are initialised on
   * a worker thread, and pretrained weights are loaded, before the promise resolves: the event loop stays free
   * (convnext_large takes ~3 s to initialise on 2 cores).
   */
  static async create(options: ConvNeXtCreateOptions = {}): Promise<ConvNeXt> {
    const { head = 'localization', variant = 'convnext_atto', pretrained, ...rest } = options;
    const nativeOptions: NativeModelOptions = { ...rest, variant, head };
    const model = new ConvNeXt({ ...nativeOptions, pretrained }, await native().Model.create(nativeOptions));
    await model.ready();
    return model;
  }
  /** The valid variant names, every registered family (ConvNeXt V1, then V2). */
  static variants(): string[] {
    return native().variants.map((v) => v.name);
  }

  /**
   * The registered name of `name` as the native registry reads it (`CONVNEXTV2_ATTO` → `convnextv2_atto`; a bare size
   * such as `tiny` is the first family's, `convnext_tiny`), or undefined when no family has it (for CLI validation).
   */
  static resolveVariant(name: string): string | undefined {
    const all = native().variants;
    const key = name.toLowerCase();
    return all.find((v) => v.name === key)?.name ?? all.find((v) => v.name === `${all[0]?.family}_${key}`)?.name;
  }

  /** Resolves once pretrained weights (if any) are loaded; rejects with the loader's error. */
  ready(): Promise<WeightsReport | null> {
    return this.pretrainedLoaded;
  }
  /** The model family (`convnext`, `convnextv2`), e.g. for a tracker tag. */
  get family(): string {
    return this.native.family;
  }
  get variant(): string {
    return this.native.variant;
  }
  get head(): HeadKind {
    return this.native.head;
  }
  get inChans(): number {
    return this.native.inChans;
  }
  get outputNames(): string[] {
    return this.native.outputNames;
  }
  numParameters(trainableOnly = false): number {
    return this.native.numParameters(trainableOnly);
  }
  loadWeights(path: string, options?: { strict?: boolean }): Promise<WeightsReport> {
    return this.native.loadWeights(path, options);
  }
  saveWeights(path: string): Promise<void> {
    return this.native.saveWeights(path);
  }
  /** Hyperparameters as logged to MLflow. */
  hyperparameters(): Record<string, unknown> {
    return {
      family: this.family,
      variant: this.variant,
      head: this.head,
      in_chans: this.inChans,
      drop_path_rate: this.options.dropPathRate ?? 0,
      freeze_backbone: this.options.freezeBackbone ?? false,
      ...(this.head === 'localization' ? { head_dropout: this.options.headDropout ?? [0.3, 0.2] } : {}),
      pretrained: this.options.pretrained ?? null,
      parameters: this.numParameters(),
    };
  }
}
