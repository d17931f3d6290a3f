// Where a process stands in data-parallel training, from the launchers' variables (no processes started here).
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { Trainer } from '../../lib/index.js';
import { planDistributed } from '../../lib/trainer/distributed.js';

describe('planDistributed', () => {
  it('no rank variables: launcher mode with devices × numNodes ranks, this process rank 0 of its node', () => {
    expect(planDistributed({}, 1, 1)).toMatchObject({ mode: 'single', rank: 0, worldSize: 1 });
    const p = planDistributed({}, 4, 1);
    expect(p).toMatchObject({ mode: 'launcher', rank: 0, localRank: 0, worldSize: 4, localWorldSize: 4, nodeRank: 0, masterAddr: '127.0.0.1', agentStore: false });
    expect(p.masterPort).toBeUndefined();  // chosen free when launching
    const n1 = planDistributed({ NODE_RANK: '1', MASTER_ADDR: '10.0.0.5', MASTER_PORT: '29400' }, 2, 3);
    expect(n1).toMatchObject({ mode: 'launcher', rank: 2, worldSize: 6, nodeRank: 1, masterAddr: '10.0.0.5', masterPort: 29400 });
  });

  it("torchrun's variables: external mode, the agent's store and restart count", () => {
    const p = planDistributed({
      RANK: '3', LOCAL_RANK: '1', WORLD_SIZE: '4', LOCAL_WORLD_SIZE: '2', GROUP_RANK: '1', MASTER_ADDR: 'node0', MASTER_PORT: '29500',
      TORCHELASTIC_USE_AGENT_STORE: 'True', TORCHELASTIC_RESTART_COUNT: '2',
    }, 8, 1);  // devices is ignored: the variables decide
    expect(p).toEqual({ mode: 'external', rank: 3, localRank: 1, worldSize: 4, localWorldSize: 2, nodeRank: 1, masterAddr: 'node0', masterPort: 29500, agentStore: true, restartCount: 2 });
  });

  it("Kubeflow PyTorchJob's variables (one process per pod): external mode, rank 0 hosts the store", () => {
    expect(planDistributed({ RANK: '0', WORLD_SIZE: '3', MASTER_ADDR: 'heimdall-ddp-master-0', MASTER_PORT: '23456' }, 1, 1))
      .toMatchObject({ mode: 'external', rank: 0, localRank: 0, worldSize: 3, localWorldSize: 1, agentStore: false, masterPort: 23456 });
  });

  it('names what is missing or wrong', () => {
    expect(() => planDistributed({ RANK: '1' }, 1, 1)).toThrow(/WORLD_SIZE is not/);
    expect(() => planDistributed({ RANK: '2', WORLD_SIZE: '2', MASTER_PORT: '1' }, 1, 1)).toThrow(/RANK=2 is not below WORLD_SIZE=2/);
    expect(() => planDistributed({ RANK: '0', WORLD_SIZE: '2' }, 1, 1)).toThrow(/MASTER_PORT is not/);
    expect(() => planDistributed({ RANK: 'x', WORLD_SIZE: '2' }, 1, 1)).toThrow(/RANK=x is not an integer/);
    expect(() => planDistributed({}, 2, 2)).toThrow(/NODE_RANK .* MASTER_ADDR and MASTER_PORT/);
  });

  it('the Trainer: devices/numNodes/strategy/syncBatchNorm options', () => {
    expect(new Trainer({ devices: 1, enableProgressBar: false }).worldSize).toBe(1);
    expect(new Trainer({ devices: 'auto', device: 'cpu', enableProgressBar: false }).worldSize).toBe(1);
    expect(new Trainer({ syncBatchNorm: true }).config.syncBatchNorm).toBe(true);
    expect(new Trainer({}).config.syncBatchNorm).toBe(false);
    expect(() => new Trainer({ devices: 0 })).toThrow(/devices/);
  });

  it("each local rank's engine takes its share of the CPUs, unless threads or OMP_NUM_THREADS say otherwise", () => {
    const saved = process.env.OMP_NUM_THREADS;
    delete process.env.OMP_NUM_THREADS;
    try {
      const cpus = availableParallelism();
      expect(new Trainer({ devices: 2, enableProgressBar: false }).threads).toBe(Math.max(1, Math.floor(cpus / 2)));
      expect(new Trainer({ devices: 2, threads: 3, enableProgressBar: false }).threads).toBe(3);
      expect(new Trainer({ enableProgressBar: false }).threads).toBeUndefined(); // one process: the engine's default
      process.env.OMP_NUM_THREADS = '1';
      expect(new Trainer({ devices: 2, enableProgressBar: false }).threads).toBeUndefined(); // libtorch reads it
    } finally {
      if (saved === undefined) delete process.env.OMP_NUM_THREADS;
      else process.env.OMP_NUM_THREADS = saved;
    }
  });
});
