// Data-parallel launch: which rank this process is, and how the ranks start.
//
// - External mode: the rank variables are set — by torchrun (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
//   MASTER_ADDR, MASTER_PORT, TORCHELASTIC_USE_AGENT_STORE, TORCHELASTIC_RESTART_COUNT), by Kubeflow's PyTorchJob
//   (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK; one process per pod), or by our own launcher in its children.
// - Launcher mode (no RANK): this process is rank 0 (local rank 0 of node NODE_RANK) and starts the other local
//   ranks as child processes running the same script with the same arguments, as Lightning's subprocess
//   launcher does. If a child dies, the others are stopped and fit fails naming the rank.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import type { ProcessGroupInput } from '../config.js';
import { HeimdallError } from '../errors.js';

export interface DistributedPlan {
  mode: 'single' | 'launcher' | 'external';
  rank: number;
  localRank: number;
  worldSize: number;
  localWorldSize: number;
  nodeRank: number;
  masterAddr: string;
  /** undefined in launcher mode until a free port is chosen. */
  masterPort?: number;
  agentStore: boolean;
  restartCount: number;
}

const intVar = (env: NodeJS.ProcessEnv, name: string, min: number): number | undefined => {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    throw new HeimdallError('HEIMDALL_INVALID_CONFIG', `${name}=${raw} is not an integer ≥ ${min}; the launcher (torchrun, Kubeflow, heimdall-torch) sets it`);
  }
  return n;
};

/**
 * Where this process stands, from the environment and the Trainer's `devices` × `numNodes`. `devices` is the
 * number of local processes (resolved from 'auto' by the caller).
 */
export function planDistributed(env: NodeJS.ProcessEnv, devices: number, numNodes: number): DistributedPlan {
  const rank = intVar(env, 'RANK', 0);
  const masterAddr = env.MASTER_ADDR || '127.0.0.1';
  if (rank !== undefined) {
    const worldSize = intVar(env, 'WORLD_SIZE', 1);
    if (worldSize === undefined) throw new HeimdallError('HEIMDALL_INVALID_CONFIG', `RANK=${rank} is set but WORLD_SIZE is not: set both (torchrun and Kubeflow's PyTorchJob do)`);
    if (rank >= worldSize) throw new HeimdallError('HEIMDALL_INVALID_CONFIG', `RANK=${rank} is not below WORLD_SIZE=${worldSize}`);
    const masterPort = intVar(env, 'MASTER_PORT', 1);
    if (worldSize > 1 && masterPort === undefined) throw new HeimdallError('HEIMDALL_INVALID_CONFIG', `RANK and WORLD_SIZE=${worldSize} are set but MASTER_PORT is not: every rank needs the rendezvous address MASTER_ADDR:MASTER_PORT`);
    const localWorldSize = intVar(env, 'LOCAL_WORLD_SIZE', 1) ?? 1;
    return {
      mode: worldSize > 1 ? 'external' : 'single',
      rank,
      localRank: intVar(env, 'LOCAL_RANK', 0) ?? 0,
      worldSize,
      localWorldSize,
      nodeRank: intVar(env, 'NODE_RANK', 0) ?? intVar(env, 'GROUP_RANK', 0) ?? 0,
      masterAddr,
      ...(masterPort !== undefined ? { masterPort } : {}),
      agentStore: /^(1|true)$/i.test(env.TORCHELASTIC_USE_AGENT_STORE ?? ''),
      restartCount: intVar(env, 'TORCHELASTIC_RESTART_COUNT', 0) ?? 0,
    };
  }
  const nodeRank = intVar(env, 'NODE_RANK', 0) ?? 0;
  const worldSize = devices * numNodes;
  if (numNodes > 1 && (!env.MASTER_ADDR || !env.MASTER_PORT)) {
    throw new HeimdallError('HEIMDALL_INVALID_CONFIG',
      `numNodes ${numNodes}: run the same command on every node with NODE_RANK (0…${numNodes - 1}), MASTER_ADDR and MASTER_PORT ` +
        '(node 0\'s address and a free port), or launch with torchrun / a Kubeflow PyTorchJob');
  }
  if (nodeRank >= numNodes) throw new HeimdallError('HEIMDALL_INVALID_CONFIG', `NODE_RANK=${nodeRank} is not below numNodes ${numNodes}`);
  const masterPort = intVar(env, 'MASTER_PORT', 1);
  return {
    mode: worldSize > 1 ? 'launcher' : 'single',
    rank: nodeRank * devices,
    localRank: 0,
    worldSize,
    localWorldSize: devices,
    nodeRank,
    masterAddr,
    ...(masterPort !== undefined ? { masterPort } : {}),
    agentStore: false,
    restartCount: 0,
  };
}

/** A TCP port free on this machine now. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** The process-group options of a plan (masterPort chosen). */
export function groupOptions(plan: DistributedPlan, backend: 'gloo' | 'nccl', timeouts: { initTimeoutMs?: number; timeoutMs?: number } = {}): ProcessGroupInput {
  if (plan.masterPort === undefined) throw new HeimdallError('HEIMDALL_INTERNAL', 'groupOptions: no master port chosen');
  return {
    backend, rank: plan.rank, worldSize: plan.worldSize, masterAddr: plan.masterAddr, masterPort: plan.masterPort,
    agentStore: plan.agentStore, restartCount: plan.restartCount, localRank: plan.localRank, ...timeouts,
  };
}

interface ChildRank {
  rank: number;
  child: ChildProcess;
  exit?: { code: number | null; signal: NodeJS.Signals | null };
}

/**
 * Launcher mode: starts local ranks 1…localWorldSize-1 as copies of this process (same Node flags, script and
 * arguments) with the rank variables set. `failure` names the first rank that died.
 */
export class LocalLauncher {
  private readonly children: ChildRank[] = [];
  private failed: ChildRank | null = null;
  private readonly onFailure: ((message: string) => void)[] = [];
  private readonly cleanup = () => this.kill('SIGTERM');

  constructor(readonly plan: DistributedPlan) {}

  start(): void {
    const { plan } = this;
    for (let local = 1; local < plan.localWorldSize; local++) {
      const rank = plan.nodeRank * plan.localWorldSize + local;
      const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
        env: {
          ...process.env,
          MASTER_ADDR: plan.masterAddr,
          MASTER_PORT: String(plan.masterPort),
          WORLD_SIZE: String(plan.worldSize),
          RANK: String(rank),
          LOCAL_RANK: String(local),
          LOCAL_WORLD_SIZE: String(plan.localWorldSize),
          NODE_RANK: String(plan.nodeRank),
        },
        stdio: ['ignore', 'inherit', 'inherit'],
      });
      const entry: ChildRank = { rank, child };
      child.on('exit', (code, signal) => {
        entry.exit = { code, signal };
        if ((code !== 0 || signal) && !this.failed) {
          this.failed = entry;
          const message = this.failure()!;
          for (const f of this.onFailure) f(message);
        }
      });
      child.on('error', (err) => {
        entry.exit = { code: -1, signal: null };
        if (!this.failed) {
          this.failed = entry;
          for (const f of this.onFailure) f(`rank ${rank} could not start: ${err.message}`);
        }
      });
      this.children.push(entry);
    }
    // The script ran to its end: the other ranks finish theirs (they may still be printing or closing files)
    // before this process exits. An explicit process.exit() stops them instead.
    process.once('beforeExit', this.drain);
    process.on('exit', this.cleanup);
  }

  private readonly drain = () => {
    void this.wait(60_000);
  };

  /** Why the launch failed: the first rank that exited abnormally, or null. */
  failure(): string | null {
    const f = this.failed;
    if (!f?.exit) return null;
    const how = f.exit.signal ? `was killed by ${f.exit.signal}` : `exited with code ${f.exit.code}`;
    return `rank ${f.rank} (pid ${f.child.pid}) ${how}`;
  }

  /** Called once with failure()'s text when a rank dies. */
  whenFailed(fn: (message: string) => void): void {
    this.onFailure.push(fn);
  }

  /** Stops the ranks still running. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    for (const c of this.children) if (!c.exit && c.child.exitCode === null) c.child.kill(signal);
  }

  /** Waits for every child; after `graceMs`, kills those still running. Returns failure(). */
  async wait(graceMs: number): Promise<string | null> {
    const timer = setTimeout(() => this.kill('SIGKILL'), graceMs);
    await Promise.all(this.children.map((c) => (c.exit ? undefined : new Promise<void>((r) => c.child.once('exit', () => r())))));
    clearTimeout(timer);
    process.off('exit', this.cleanup);
    process.off('beforeExit', this.drain);
    return this.failure();
  }
}
