// Thread placement (native/common/threads.h): the engine's thread is the only one with an OpenMP team. Other
// threads that run ATen ops — the JavaScript thread, libuv's pool, the loader's prefetch thread — stay
// single-threaded, so the training step's team never shares the cores with a second team (libgomp would also
// stop spin-waiting). OpenMP workers inherit the name of the thread that started their team, which is what these
// tests count. Each test file runs in its own process (vitest forks pool), so the counts are this file's alone.
import { readFileSync, readdirSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { HeimdallDataModule } from '../../lib/index.js';
import { native, type NativeEngineOptions } from '../../lib/native.js';
import { blobDataset } from './fixtures.js';

const addon = native();
const cpu: NativeEngineOptions = { device: 'cpu', seed: 7, optimizer: { name: 'adamw', lr: 2e-3 } };

/** Names of this process's threads (Linux /proc), counted. */
function threadNames(): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const name = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
      out.set(name, (out.get(name) ?? 0) + 1);
    } catch {
      /* ended meanwhile */
    }
  }
  return out;
}
const count = (name: string) => threadNames().get(name) ?? 0;
// Engines stay referenced for the whole file: a collected engine ends its thread (and its team), which would
// change the counts below in the middle of a test.
const alive: unknown[] = [];

describe.runIf(process.platform === 'linux')('thread placement', () => {
  it('the JavaScript thread and libuv\'s pool start no OpenMP team, however much ATen work they run', async () => {
    await stat('.'); // libuv's pool threads exist before the rename below, so they keep their own name
    const before = threadNames();
    process.title = 'heimdall-jsmain'; // renames the main thread: OpenMP workers it started now would carry the name
    try {
      expect(count('heimdall-jsmain')).toBe(1);
      // ATen work on the JavaScript thread: a model's weight initialisation, a large tensor copy.
      const model = new addon.Model({ variant: 'tiny', head: 'regression', outputs: 2, seed: 1 });
      addon.tensorDataset(new Float32Array(4_000_000).fill(0.5), [1000, 4, 1000, 1], new Float32Array(2000), [1000, 2]);
      // and on a libuv pool thread (Model.create initialises there)
      await addon.Model.create({ variant: 'tiny', head: 'regression', outputs: 2, seed: 1 });
      expect(count('heimdall-jsmain')).toBe(1);
      expect(model.numParameters()).toBeGreaterThan(1e6);
    } finally {
      process.title = 'node';
    }
  });

  it('an engine trains with one team of its thread count, and gathers in-memory batches on its own thread', async () => {
    const engines0 = count('heimdall-engine');
    const model = new addon.Model({ variant: 'atto', head: 'regression', outputs: 2, seed: 3 });
    const engine = new addon.Engine(model, { ...cpu, threads: 2 });
    alive.push(engine);
    const during: Array<Map<string, number>> = [];
    await engine.trainEpoch(blobDataset(64, 1), { batchSize: 16, maxEpochs: 1 }, () => during.push(threadNames()));
    expect(during.length).toBe(4);
    // the engine's thread and the one worker of its team
    expect(count('heimdall-engine') - engines0).toBe(2);
    for (const names of during) expect(names.get('heimdall-loader') ?? 0).toBe(0);

    // threads: 1 → a fresh engine starts no worker at all
    const single = new addon.Engine(new addon.Model({ variant: 'atto', head: 'regression', outputs: 2, seed: 3 }), { ...cpu, threads: 1 });
    alive.push(single);
    await single.trainEpoch(blobDataset(32, 2), { batchSize: 16, maxEpochs: 1 });
    expect(count('heimdall-engine') - engines0).toBe(3);
  });

  it('data computed per batch is prefetched on one loader thread that starts no team of its own', async () => {
    const data = HeimdallDataModule.synthetic({ samples: 48, seed: 4, cache: false, materialize: false });
    const { train } = data.split(0);
    const model = new addon.Model({ variant: 'atto', head: 'localization', inChans: 7, seed: 1 });
    const engine = new addon.Engine(model, { ...cpu, threads: 2, positionScale: data.positionScale });
    alive.push(engine);
    const loaders: number[] = [];
    await engine.trainEpoch(train, { batchSize: 8, maxEpochs: 1 }, () => loaders.push(count('heimdall-loader')));
    expect(loaders.length).toBeGreaterThan(2);
    // One loader thread while it still has batches to prepare (it ends two batches before the epoch does); a
    // team of its own would add a worker under its name.
    expect(loaders[0]).toBe(1);
    expect(Math.max(...loaders)).toBe(1);
  });

  it('materialize() spreads over the engines\' thread count even though it runs on a single-threaded pool thread', async () => {
    const n = addon.torchInfo().threads;
    if (n < 2) return; // one CPU: nothing to spread over
    const total = () => [...threadNames().values()].reduce((a, b) => a + b, 0);
    const before = total();
    const data = HeimdallDataModule.synthetic({ samples: 160, seed: 8, materialize: false });
    let most = before;
    const poll = setInterval(() => (most = Math.max(most, total())), 2);
    try {
      await data.materialize();
    } finally {
      clearInterval(poll);
    }
    // n − 1 helper threads next to the pool thread that called it
    expect(most - before).toBe(n - 1);
  });

  it('torchInfo().threads is the engines\' default, setNumThreads() changes it, and neither touches the JavaScript thread', async () => {
    const info = addon.torchInfo();
    const { availableParallelism } = await import('node:os');
    expect(info.threads).toBeGreaterThanOrEqual(1);
    expect(info.threads).toBeLessThanOrEqual(availableParallelism());
    addon.setNumThreads(1);
    try {
      expect(addon.torchInfo().threads).toBe(1);
      const engines0 = count('heimdall-engine');
      const engine = new addon.Engine(new addon.Model({ variant: 'atto', head: 'regression', outputs: 2, seed: 5 }), cpu);
      alive.push(engine);
      await engine.trainEpoch(blobDataset(32, 3), { batchSize: 16, maxEpochs: 1 });
      expect(count('heimdall-engine') - engines0).toBe(1); // default now 1: the engine's thread alone
    } finally {
      addon.setNumThreads(info.threads);
    }
    expect(addon.torchInfo().threads).toBe(info.threads);
  });
});
