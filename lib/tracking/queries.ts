// Reading runs back: they see everything logged before them (the tracker flushes pending logging first).
import { quoteKey } from './filter.js';
import type { Metric, Run, RunInfo, SearchRunsOptions } from './types.js';
import { validateKey } from './validation.js';
import type { WorkerClient } from './worker_client.js';

/** A run's ids, status, times, params, metrics (latest values) and tags. */
export interface RunSummary extends Omit<RunInfo, 'lifecycleStage'>, Omit<Run, 'info'> {}

export interface BestRun {
  runId: string;
  metric: string;
  value: number;
  params: Record<string, string>;
}

export class RunQueries {
  /**
   * `beforeRead`: delivers what is pending (or throws); `experimentId`: the experiment searched when the
   * caller names none.
   */
  constructor(
    private readonly client: WorkerClient,
    private readonly beforeRead: () => Promise<void>,
    private readonly experimentId: () => Promise<string>,
  ) {}

  async getRun(runId: string): Promise<Run> {
    await this.beforeRead();
    return this.client.request('getRun', runId);
  }

  async getRunInfo(runId: string): Promise<RunSummary> {
    const r = await this.getRun(runId);
    return { ...r.info, params: r.params, metrics: r.metrics, tags: r.tags };
  }

  async getMetricHistory(key: string, runId: string): Promise<Metric[]> {
    await this.beforeRead();
    return this.client.request('getMetricHistory', runId, key);
  }

  async searchRuns(opts: SearchRunsOptions): Promise<Run[]> {
    await this.beforeRead();
    const experimentIds = opts.experimentIds ?? [await this.experimentId()];
    return this.client.request('searchRuns', { ...opts, experimentIds });
  }

  async getBestRun(metric: string, opts: { mode?: 'min' | 'max'; filter?: string; experimentIds?: string[] }): Promise<BestRun | null> {
    validateKey('metric', metric);
    const mode = opts.mode ?? 'min';
    const q = quoteKey(metric);
    const has = `metrics.${q} >= -1.7976931348623157e308`;
    const runs = await this.searchRuns({
      experimentIds: opts.experimentIds,
      filter: opts.filter ? `${opts.filter} AND ${has}` : has,
      orderBy: [`metrics.${q} ${mode === 'min' ? 'ASC' : 'DESC'}`],
      maxResults: 20,
    });
    const best = runs.find((r) => typeof r.metrics[metric] === 'number' && !Number.isNaN(r.metrics[metric]));
    return best ? { runId: best.info.runId, metric, value: best.metrics[metric]!, params: best.params } : null;
  }
}
