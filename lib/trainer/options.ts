// The Trainer's options as one zod schema: constructor options and CLI flags are validated by it, and an
// invalid configuration gives one error listing every problem.
import { z } from 'zod';
import { ConfigError } from '../config.js';

export const optimizerSchema = z
  .object({
    name: z.enum(['adamw', 'sgd']).default('adamw'),
    lr: z.number().positive().default(1e-3),
    weightDecay: z.number().min(0).default(1e-5),
    beta1: z.number().min(0).lt(1).optional(),
    beta2: z.number().min(0).lt(1).optional(),
    eps: z.number().positive().optional(),
    momentum: z.number().min(0).optional(),
    nesterov: z.boolean().optional(),
  })
  .strict();

export const scheduleSchema = z
  .object({
    name: z.enum(['cosine', 'constant']).default('cosine'),
    warmupSteps: z.number().int().min(0).default(0),
    minLr: z.number().min(0).default(1e-6),
  })
  .strict();

export const trainerOptionsSchema = z
  .object({
    maxEpochs: z.number().int().min(1).default(100),
    device: z
      .string()
      .regex(/^(auto|cpu|cuda(:\d+)?)$/, 'must be auto, cpu, cuda or cuda:N')
      .default('auto'),
    precision: z.enum(['32', 'bf16-mixed', '16-mixed']).default('32'),
    optimizer: optimizerSchema.default({ name: 'adamw', lr: 1e-3, weightDecay: 1e-5 }),
    schedule: scheduleSchema.default({ name: 'cosine', warmupSteps: 0, minLr: 1e-6 }),
    gradClipNorm: z.number().min(0).default(0),
    accumulateGradBatches: z.number().int().min(1).default(1),
    channelsLast: z.boolean().optional(),
    seed: z.number().int().min(0).default(42),
    threads: z.number().int().min(1).optional(),
    defaultRootDir: z.string().min(1).default('./outputs'),
    enableProgressBar: z.boolean().optional(),
    handleSignals: z.boolean().default(true),
    checkValEveryNEpoch: z.number().int().min(1).default(1),
  })
  .strict();

export type TrainerConfigInput = z.input<typeof trainerOptionsSchema>;
export type TrainerConfig = z.output<typeof trainerOptionsSchema>;

/** Parses options; throws one ConfigError naming every invalid field. */
export function parseTrainerOptions(input: unknown, source = 'Trainer options'): TrainerConfig {
  const r = trainerOptionsSchema.safeParse(input);
  if (r.success) return r.data;
  throw new ConfigError(
    r.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`),
    source,
  );
}
