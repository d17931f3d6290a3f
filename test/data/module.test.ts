// HeimdallDataModule as the Trainer's DataModule: passed straight to trainer.fit, the reference split from
// setup() (seeded, built once), train-only augmentation, its batch size and parameters, bad options named.
// Real libtorch through the addon (build/Release/heimdall_torch.node, or HEIMDALL_TORCH_ADDON=<path>).
import { describe, expect, it } from 'vitest';
import { HeimdallDataModule } from '../../lib/data/heimdall.js';
import { ConvNeXt } from '../../lib/model.js';
import { Trainer, type DataModule } from '../../lib/trainer/index.js';
import { tempDir } from '../helpers/tmp.js';

const base = { device: 'cpu', threads: 2, enableProgressBar: false, enableModelSummary: false, handleSignals: false, optimizer: { name: 'adamw' as const, lr: 2e-3, weightDecay: 1e-5 } };
const model = () => ConvNeXt.localization('atto', { inChans: 7, seed: 1 });
const pairs = (a: Float64Array) => Array.from({ length: a.length / 2 }, (_, i) => `${a[2 * i]},${a[2 * i + 1]}`);

describe('HeimdallDataModule as the Trainer\'s DataModule', () => {
  it('goes straight into trainer.fit / test: its batch size, the reference split, errors in metres, logged parameters', async () => {
    const data = HeimdallDataModule.synthetic({ samples: 60, seed: 3, batchSize: 16 });
    const dm: DataModule = data; // the interface itself, no adapter
    expect(dm.batchSize).toBe(16);
    const trainer = new Trainer({ ...base, maxEpochs: 2, defaultRootDir: tempDir() });
    const history = await trainer.fit(model(), data);
    // 60 samples → test 6, val ⌊0.2·54⌋ = 10, train 44 → 3 batches of 16 per epoch
    expect(history.globalStep).toBe(6);
    expect(history.epochs[1]!.val!['val/position_error_m']).toBeGreaterThan(1000); // metres, through positionScale
    const test = await trainer.test();
    expect(test['test/position_error_m']).toBeGreaterThan(1000);
    expect(data.hyperparameters()).toEqual({ source: 'synthetic', seed: 3, preset: 'default', samples: 60, input_shape: [7, 128, 32], batch_size: 16, split_seed: 3 });
    expect(data.describe()).toBe('synthetic RF, 60 samples, seed 3, 7 receivers');
  });

  it('setup(): the seeded reference split, built once, a partition of the samples', async () => {
    const data = HeimdallDataModule.synthetic({ samples: 50, seed: 4 });
    const s = await data.setup();
    expect(await data.setup()).toBe(s);
    expect([s.train.size, s.val.size, s.test.size]).toEqual([36, 9, 5]);
    expect(data.splitSeed).toBe(4); // synthetic: the data seed unless splitSeed is given
    expect(pairs(data.positions(s.test))).toEqual(pairs(data.positions(data.split(4).test)));
    const all = [s.train, s.val, s.test].flatMap((d) => pairs(data.positions(d)));
    expect(new Set(all)).toEqual(new Set(pairs(data.positions())));
    const other = await HeimdallDataModule.synthetic({ samples: 50, seed: 4, splitSeed: 9 }).setup();
    expect(pairs(data.positions(other.test))).not.toEqual(pairs(data.positions(s.test)));
    expect(pairs(data.positions(other.test))).toEqual(pairs(data.positions(data.split(9).test)));
  });

  it('augments the train split only', async () => {
    // The same samples with and without a (huge) augmentation: evaluation sees identical inputs, training does not.
    const plain = HeimdallDataModule.synthetic({ samples: 40, seed: 5, batchSize: 8, augment: { noiseProbability: 0, shiftProbability: 0 } });
    const noisy = HeimdallDataModule.synthetic({ samples: 40, seed: 5, batchSize: 8, augment: { noiseProbability: 1, noiseStd: 5, shiftProbability: 0 } });
    const trainLoss = async (data: HeimdallDataModule) => {
      const history = await new Trainer({ ...base, maxEpochs: 1, seed: 7, defaultRootDir: tempDir() }).fit(model(), data);
      return history.epochs[0]!.train['train/loss']!;
    };
    const plainLoss = await trainLoss(plain);
    expect(await trainLoss(plain)).toBe(plainLoss); // seeded: the same run gives the same loss
    expect(await trainLoss(noisy)).not.toBeCloseTo(plainLoss, 2); // the training batches were augmented
    // one trained model evaluated on both: identical (no augmentation outside training)
    const trainer = new Trainer({ ...base, maxEpochs: 1, seed: 7, defaultRootDir: tempDir() });
    await trainer.fit(model(), plain);
    const onPlain = await trainer.validate(plain);
    const onNoisy = await trainer.validate(noisy);
    expect(onNoisy['val/loss']).toBe(onPlain['val/loss']);
    expect(onNoisy['val/position_error_m']).toBe(onPlain['val/position_error_m']);
  });

  it('fromDirectory(): batch size and split seed (default 42) as options; bad options are named', async () => {
    const dir = tempDir();
    await HeimdallDataModule.writeSynthetic(dir, 12, { seed: 2 });
    const data = await HeimdallDataModule.fromDirectory(dir, { batchSize: 4 });
    expect([data.batchSize, data.splitSeed]).toEqual([4, 42]);
    const s = await data.setup();
    expect([s.train.size, s.val.size, s.test.size]).toEqual([9, 2, 1]); // test max(1, 1), val ⌊0.2·11⌋
    expect(data.hyperparameters()).toMatchObject({ source: 'directory', samples: 12, batch_size: 4, split_seed: 42 });
    expect(() => HeimdallDataModule.synthetic({ samples: 20, batchSize: 0 })).toThrow(/invalid synthetic data options: batchSize: /);
    await expect(HeimdallDataModule.fromDirectory(dir, { splitSeed: -1 })).rejects.toThrow(/invalid data directory options: splitSeed: /);
  });
});
