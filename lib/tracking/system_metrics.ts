// System metrics of a run, as `mlflow.enable_system_metrics_logging()` logs them (mlflow/system_metrics/ of the
// pinned MLflow): sampled every `MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL` seconds (default 10), averaged over
// `MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING` samples (default 1) and rounded to 0.1, logged as
// `system/<name>` (`system/<node id>/<name>` with `MLFLOW_SYSTEM_METRICS_NODE_ID`) at steps 0, 1, 2… (a resumed
// run continues after its last step). Megabytes are 1e6 bytes. It runs in the tracker's worker thread, never on
// the training thread, and reads what psutil reads on Linux:
//   cpu_utilization_percentage       /proc/stat: busy share of all CPUs since the previous sample (psutil.cpu_percent)
//   system_memory_usage_megabytes    /proc/meminfo: total − free − buffers − (cached + SReclaimable) (psutil's `used`)
//   system_memory_usage_percentage   the same / total × 100
//   disk_usage_percentage, disk_usage_megabytes, disk_available_megabytes
//                                    statfs of the working folder (psutil.disk_usage; MLflow looks at `/`)
//   network_receive_megabytes, network_transmit_megabytes
//                                    /proc/net/dev, all interfaces, since monitoring started (not averaged: the last value)
//   process_memory_rss_megabytes     this process's resident set (heimdall-torch's addition; not in MLflow)
//   gpu_{i}_utilization_percentage, gpu_{i}_memory_usage_megabytes, gpu_{i}_memory_usage_percentage,
//   gpu_{i}_power_usage_watts, gpu_{i}_power_usage_percentage
//                                    NVIDIA GPUs through NVML (the driver's libnvidia-ml.so.1, opened at run time by
//                                    the loader shim: native/loader/nvml.cc), every GPU NVML lists, as MLflow's
//                                    GPUMonitor (CUDA_VISIBLE_DEVICES does not change the indices); no driver → no GPU rows
// One difference in timing: MLflow takes a sample, then waits; here the first sample is taken one interval after
// the start, so that the CPU share of every sample covers a whole interval (logging happens at the same times).
import { readFileSync, statfsSync } from 'node:fs';
import { loadShim, type LoaderShim, type NvmlGpu } from '../loader/libtorch.js';
import { addonPath } from '../native.js';
import type { Metric } from './types.js';

export interface SystemMetricsOptions {
  /** Seconds between samples (MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL, default 10). */
  samplingIntervalS: number;
  /** Samples averaged into one logged point (MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING, default 1). */
  samplesBeforeLogging: number;
  /** Inserted after `system/` (MLFLOW_SYSTEM_METRICS_NODE_ID), for multi-node training. */
  nodeId?: string;
  /** First step to log (a resumed run continues its steps). */
  startStep: number;
  /** The folder whose file system `disk_*` describes (default: the working folder). */
  diskPath?: string;
  /** The NVML library to read GPUs from (the tracker's `nvmlLibrary`; null: no GPU metrics). */
  nvml: string | null;
}

export const SYSTEM_METRICS_PREFIX = 'system/';

const MB = 1e6;
const round1 = (v: number) => Math.round(v * 10) / 10;

// ---------------------------------------------------------------------------------------------------------
// Readers (Linux /proc; each returns null where the file does not exist)
// ---------------------------------------------------------------------------------------------------------
interface CpuTimes { busy: number; total: number }

/** Busy and total jiffies of all CPUs (psutil: busy = total − idle − iowait; guest time is in user already). */
export function readCpuTimes(text = readProc('/proc/stat')): CpuTimes | null {
  const line = text?.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) return null;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
  const total = user + nice + system + idle + iowait + irq + softirq + steal;
  return { busy: total - idle - iowait, total };
}

/** psutil.virtual_memory()'s total and used (bytes) from /proc/meminfo. */
export function readMemory(text = readProc('/proc/meminfo')): { total: number; used: number } | null {
  if (!text) return null;
  const kb = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  };
  const total = kb('MemTotal');
  if (!total) return null;
  const free = kb('MemFree');
  let used = total - free - kb('Buffers') - (kb('Cached') + kb('SReclaimable'));
  if (used < 0) used = total - free;
  return { total, used };
}

/** Bytes received and sent on all interfaces since boot (psutil.net_io_counters()). */
export function readNetwork(text = readProc('/proc/net/dev')): { recv: number; sent: number } | null {
  if (!text) return null;
  let recv = 0;
  let sent = 0;
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const f = line.slice(colon + 1).trim().split(/\s+/).map(Number);
    recv += f[0] ?? 0;
    sent += f[8] ?? 0;
  }
  return { recv, sent };
}

/** psutil.disk_usage(path): used, free (to unprivileged users) and percent of what users can have. */
export function readDisk(path: string): { used: number; free: number; percent: number } | null {
  try {
    const s = statfsSync(path);
    const used = (s.blocks - s.bfree) * s.bsize;
    const free = s.bavail * s.bsize;
    const totalUser = used + free;
    return { used, free, percent: totalUser > 0 ? round1((used / totalUser) * 100) : 0 };
  } catch {
    return null;
  }
}

function readProc(path: string): string | null {
  try { return readFileSync(path, 'utf8'); } catch { return null; }
}

/** Reads GPUs for one monitor: NVML through the loader shim, opened once per process and library. */
export interface GpuReader {
  sample(): NvmlGpu[];
}

/**
 * Opens NVML (`library`) through the loader shim next to the addon. No library (no NVIDIA driver) or no shim →
 * null, silently: no GPU rows. A library that is there but does not initialize → null and one warning.
 */
export function openNvml(library: string, warn: (message: string) => void): GpuReader | null {
  let shim: LoaderShim | null;
  try {
    shim = loadShim(addonPath(), 'nvmlOpen');
  } catch (e) {
    warn(`system metrics: the loader shim did not load (${(e as Error).message.split('\n')[0]}); GPU metrics are not logged for this run`);
    return null;
  }
  if (!shim) return null;
  const status = shim.nvmlOpen(library);
  if (status.status === 'absent') return null;
  if (status.status !== 'ok') {
    warn(`system metrics: NVML (${library}) is there but unusable: ${status.message}; GPU metrics are not logged for this run. ` +
      'Check the NVIDIA driver (nvidia-smi), or set HEIMDALL_NVML_LIBRARY to the libnvidia-ml.so.1 that matches it.');
    return null;
  }
  return { sample: () => shim.nvmlSample(library) };
}

/** The GPU metrics of one sample, named and computed as MLflow's GPUMonitor does from pynvml. */
export function gpuMetrics(gpus: readonly NvmlGpu[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const g of gpus) {
    const i = g.index;
    if (Number.isFinite(g.memoryUsed) && g.memoryTotal > 0) {
      out[`gpu_${i}_memory_usage_percentage`] = round1((g.memoryUsed / g.memoryTotal) * 100);
      out[`gpu_${i}_memory_usage_megabytes`] = g.memoryUsed / MB;
    }
    if (Number.isFinite(g.utilization)) out[`gpu_${i}_utilization_percentage`] = g.utilization;
    if (Number.isFinite(g.power)) {
      out[`gpu_${i}_power_usage_watts`] = g.power / 1000;
      if (g.powerLimit > 0) out[`gpu_${i}_power_usage_percentage`] = (g.power / g.powerLimit) * 100;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// The monitor
// ---------------------------------------------------------------------------------------------------------
/**
 * Samples every interval and hands `publish` one point per metric every `samplesBeforeLogging` samples.
 * Samples not yet logged when it stops are dropped, as MLflow's monitor drops them.
 */
export class SystemMetricsMonitor {
  private timer: NodeJS.Timeout | null = null;
  private samples: Record<string, number>[] = [];
  private step: number;
  private prevCpu: CpuTimes | null;
  private readonly net0: { recv: number; sent: number } | null;
  private readonly gpus: GpuReader | null;
  private stopped = false;
  readonly prefix: string;

  constructor(
    private readonly runId: string,
    private readonly o: SystemMetricsOptions,
    private readonly publish: (runId: string, metrics: Metric[]) => void,
    private readonly warn: (message: string) => void,
  ) {
    this.step = o.startStep;
    this.prefix = SYSTEM_METRICS_PREFIX + (o.nodeId ? `${o.nodeId}/` : '');
    this.prevCpu = readCpuTimes();
    this.net0 = readNetwork();
    this.gpus = o.nvml === null ? null : openNvml(o.nvml, warn);
  }

  /** Whether this monitor logs GPU metrics (NVML opened and initialized). */
  get readsGpus(): boolean {
    return this.gpus !== null;
  }

  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => this.tick(), Math.max(1, this.o.samplingIntervalS * 1000));
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Takes one sample (and logs when `samplesBeforeLogging` are gathered). */
  tick(): void {
    if (this.stopped) return;
    const sample = this.sampleHost();
    if (this.gpus) Object.assign(sample, gpuMetrics(this.gpus.sample()));
    this.samples.push(sample);
    if (this.samples.length >= this.o.samplesBeforeLogging) this.flushSamples();
  }

  /** CPU, memory, disk, network and process figures of this moment. */
  sampleHost(): Record<string, number> {
    const s: Record<string, number> = {};
    const cpu = readCpuTimes();
    if (cpu && this.prevCpu) {
      const dt = cpu.total - this.prevCpu.total;
      s.cpu_utilization_percentage = dt > 0 ? round1(Math.min(100, Math.max(0, ((cpu.busy - this.prevCpu.busy) / dt) * 100))) : 0;
    }
    if (cpu) this.prevCpu = cpu;
    const mem = readMemory();
    if (mem) {
      s.system_memory_usage_megabytes = mem.used / MB;
      s.system_memory_usage_percentage = (mem.used / mem.total) * 100;
    }
    const disk = readDisk(this.o.diskPath ?? process.cwd());
    if (disk) {
      s.disk_usage_percentage = disk.percent;
      s.disk_usage_megabytes = disk.used / MB;
      s.disk_available_megabytes = disk.free / MB;
    }
    const net = readNetwork();
    if (net && this.net0) {
      s.network_receive_megabytes = net.recv / MB - this.net0.recv / MB;
      s.network_transmit_megabytes = net.sent / MB - this.net0.sent / MB;
    }
    s.process_memory_rss_megabytes = process.memoryUsage.rss() / MB;
    return s;
  }

  /** Averages the gathered samples (rounded to 0.1; network: the last value) and publishes them at the next step. */
  private flushSamples(): void {
    const sums = new Map<string, { sum: number; n: number; last: number }>();
    for (const s of this.samples) {
      for (const [k, v] of Object.entries(s)) {
        const e = sums.get(k) ?? { sum: 0, n: 0, last: 0 };
        e.sum += v;
        e.n++;
        e.last = v;
        sums.set(k, e);
      }
    }
    this.samples = [];
    const timestamp = Date.now();
    const step = this.step++;
    const metrics: Metric[] = [];
    for (const [k, e] of sums) {
      const value = k.startsWith('network_') ? e.last : round1(e.sum / e.n);
      metrics.push({ key: this.prefix + k, value, timestamp, step });
    }
    this.publish(this.runId, metrics);
  }
}

// ---------------------------------------------------------------------------------------------------------
// In the worker: one monitor at a time, for the tracker's active run
// ---------------------------------------------------------------------------------------------------------
/** What the switch needs of the worker: the tracker's settings, the store (resumed steps) and delivery. */
interface SwitchConfig { systemMetricsSamplingIntervalS: number; systemMetricsSamplesBeforeLogging: number; systemMetricsNodeId?: string; nvmlLibrary: string }

/** Starts and stops the monitor of the tracker's active run (the 'sysmetrics' message of protocol.ts). */
export class SystemMetricsSwitch {
  private monitor: SystemMetricsMonitor | null = null;
  private generation = 0;

  constructor(
    private readonly store: { getMetricHistory(runId: string, key: string): Promise<Metric[]> },
    private readonly cfg: SwitchConfig,
    private readonly delivery: { enqueueLocal(op: { k: 'log'; runId: string; metrics: Metric[]; params: [string, string][]; tags: [string, string][] }): void },
    private readonly warn: (message: string) => void,
  ) {}

  /**
   * Monitors `runId` from now (null: stops). A resumed run continues after its last system metrics step (of this
   * node's keys). `nodeId` overrides the configured node id.
   */
  async switchTo(runId: string | null, resume: boolean, nodeId?: string): Promise<void> {
    this.stop();
    if (runId === null) return;
    const generation = ++this.generation;
    const node = nodeId ?? this.cfg.systemMetricsNodeId;
    const prefix = SYSTEM_METRICS_PREFIX + (node ? `${node}/` : '');
    let startStep = 0;
    if (resume) {
      try {
        const history = await this.store.getMetricHistory(runId, `${prefix}cpu_utilization_percentage`);
        startStep = history.reduce((m, p) => Math.max(m, p.step + 1), 0);
      } catch { /* the store is down: start at 0, as MLflow does when it cannot read the run */ }
      if (generation !== this.generation) return; // stopped or switched meanwhile
    }
    this.monitor = new SystemMetricsMonitor(runId, {
      samplingIntervalS: this.cfg.systemMetricsSamplingIntervalS,
      samplesBeforeLogging: this.cfg.systemMetricsSamplesBeforeLogging,
      nodeId: node,
      nvml: this.cfg.nvmlLibrary,
      startStep,
    }, (id, metrics) => this.delivery.enqueueLocal({ k: 'log', runId: id, metrics, params: [], tags: [] }), this.warn);
    this.monitor.start();
  }

  stop(): void {
    this.generation++;
    this.monitor?.stop();
    this.monitor = null;
  }
}
