// One scenario written through the tracker into any store, and its check against what Python MLflow reads.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { MLflowTracker, type MLflowTrackerOptions } from '../../../lib/tracking/index.js';

export const SQL_MAX = 1.7976931348623157e308;

const tmpDirs: string[] = [];
export function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `heimdall-${prefix}-`));
  tmpDirs.push(d);
  return d;
}
/** Removes the temporary directories made by tmp() (call in afterAll). */
export function cleanupTmp(): void {
  for (const d of tmpDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

export function trackerOptions(trackingUri: string, extra: MLflowTrackerOptions = {}): MLflowTrackerOptions {
  return { trackingUri, dotenvPath: false, env: {}, handleSignals: false, spoolDir: join(tmp('spool'), 'spool'), closeTimeoutS: 60, ...extra };
}

export interface Written {
  experimentName: string;
  experimentId: string;
  run1: string;
  run2: string;
  run1ArtifactUri: string;
  model: string;
  artifacts: [string, number][];
}

export async function writeScenario(t: MLflowTracker, experimentName: string, model: string): Promise<Written> {
  const experimentId = await t.getOrCreateExperiment(experimentName, { tags: { owner: 'heimdall' } });
  const run1 = await t.startRun({ experimentId, runName: 'readback', tags: { team: 'rf' }, description: 'a run written by heimdall-torch' });
  t.logParams({ lr: 0.001, batch_size: 32, model: { backbone: 'convnext_atto', dims: [40, 80] }, flag: true });
  for (let s = 0; s < 50; s++) t.logMetrics({ 'train/loss': 1 / (s + 1), 'val/loss': 2 / (s + 1) }, s, 1_700_000_000_000 + s);
  t.logMetric('special', NaN, 0, 1_700_000_000_000);
  t.logMetric('special', Infinity, 1, 1_700_000_000_001);
  t.logMetric('neg', -Infinity, 0, 1_700_000_000_000);
  t.setTags({ stage: 'test', note: 'x' });
  const dir = tmp('art');
  writeFileSync(join(dir, 'model.bin'), Buffer.alloc(1234, 7));
  mkdirSync(join(dir, 'plots', 'sub'), { recursive: true });
  writeFileSync(join(dir, 'plots', 'a.txt'), 'hello');
  writeFileSync(join(dir, 'plots', 'sub', 'b.json'), '{"x":1}');
  t.logArtifact(join(dir, 'model.bin'), 'models');
  t.logArtifacts(join(dir, 'plots'), 'plots');
  const run1ArtifactUri = t.artifactUri!;
  const r1 = await t.endRun('FINISHED');
  expect(r1.complete, JSON.stringify(r1)).toBe(true);
  expect(r1.errors).toEqual([]);
  expect(r1.uploaded.map((u) => u.path).sort()).toEqual(['models/model.bin', 'plots/a.txt', 'plots/sub/b.json']);
  expect(r1.uploaded.find((u) => u.path === 'models/model.bin')!.sha256).toBe(createHash('sha256').update(Buffer.alloc(1234, 7)).digest('hex'));

  const run2 = await t.startRun({ experimentId, runName: 'failed-run' });
  t.logMetrics({ 'val/loss': 0.01 }, 0);
  await t.endRun('FAILED');

  const v1 = await t.registerModel(model, `runs:/${run1}/models`, { description: 'first', tags: { k: 'v' } });
  const v2 = await t.registerModel(model, `runs:/${run1}/models`);
  expect([v1.version, v2.version]).toEqual(['1', '2']);
  expect(v1.status).toBe('READY');
  await t.transitionModelStage(model, 1, 'Staging');
  const moved = await t.transitionModelStage(model, 2, 'Staging', { archiveExisting: true });
  expect(moved.currentStage).toBe('Staging');
  await t.setModelAlias(model, 'champion', 2);
  await t.setModelAlias(model, 'old', 1);
  await t.deleteModelAlias(model, 'old');
  expect((await t.getModelVersionByAlias(model, 'champion')).version).toBe('2');
  const latest = await t.getLatestVersions(model);
  expect(latest.map((v) => [v.version, v.currentStage])).toEqual([['1', 'Archived'], ['2', 'Staging']]);

  // Queries through our store
  const best = await t.getBestRun('val/loss', { mode: 'min', experimentIds: [experimentId] });
  expect(best?.runId).toBe(run2);
  expect(best?.value).toBeCloseTo(0.01);
  const worst = await t.getBestRun('val/loss', { mode: 'max', experimentIds: [experimentId] });
  expect(worst?.runId).toBe(run1);
  expect(worst?.params.lr).toBe('0.001');
  expect(await t.getBestRun('no/such-metric', { experimentIds: [experimentId] })).toBeNull();
  const byParam = await t.searchRuns({ experimentIds: [experimentId], filter: "params.lr = '0.001' AND tags.team = 'rf'" });
  expect(byParam.map((r) => r.info.runId)).toEqual([run1]);
  const failed = await t.searchRuns({ experimentIds: [experimentId], filter: "attributes.status = 'FAILED'" });
  expect(failed.map((r) => r.info.runId)).toEqual([run2]);
  const ordered = await t.searchRuns({ experimentIds: [experimentId], filter: 'metrics.`val/loss` < 1', orderBy: ['metrics.`val/loss` DESC'] });
  expect(ordered.map((r) => r.info.runId)).toEqual([run1, run2]);
  const info = await t.getRunInfo(run1);
  expect(info.status).toBe('FINISHED');
  expect(info.params['model/backbone']).toBe('convnext_atto');
  expect(info.metrics['train/loss']).toBeCloseTo(1 / 50);
  return {
    experimentName, experimentId, run1, run2, run1ArtifactUri, model,
    artifacts: [['models/model.bin', 1234], ['plots/a.txt', 5], ['plots/sub/b.json', 7]],
  };
}

/** Checks what Python MLflow read (mlflow_client.py read) against the scenario. */
export function checkReadback(py: any, w: Written): void {
  expect(py.experiment.name).toBe(w.experimentName);
  expect(py.experiment.id).toBe(w.experimentId);
  expect(py.experiment.tags.owner).toBe('heimdall');
  const runs = Object.fromEntries(py.runs.map((r: any) => [r.run_id, r]));
  expect(Object.keys(runs).sort()).toEqual([w.run1, w.run2].sort());
  const r1 = runs[w.run1];
  expect(r1.run_name).toBe('readback');
  expect(r1.status).toBe('FINISHED');
  expect(r1.end_time).toBeGreaterThanOrEqual(r1.start_time);
  expect(r1.lifecycle_stage).toBe('active');
  expect(r1.artifact_uri).toBe(w.run1ArtifactUri);
  expect(r1.artifact_uri).toMatch(new RegExp(`/${w.run1}/artifacts$`));
  expect(r1.params).toEqual({ lr: '0.001', batch_size: '32', 'model/backbone': 'convnext_atto', 'model/dims': '[40,80]', flag: 'true' });
  expect(r1.tags).toMatchObject({
    team: 'rf', stage: 'test', note: 'x', phase: 'training', service: 'training',
    'mlflow.runName': 'readback', 'mlflow.source.type': 'LOCAL', 'mlflow.note.content': 'a run written by heimdall-torch',
  });
  expect(r1.tags.model).toBeUndefined(); // what model a run trains is the Trainer's to say, not the tracker's default
  expect(r1.tags['mlflow.user']).toBe(r1.user_id);
  expect(r1.metrics['train/loss']).toBeCloseTo(1 / 50);
  expect(r1.metrics['val/loss']).toBeCloseTo(2 / 50);
  expect(r1.metrics.special).toBe(SQL_MAX);
  expect(r1.metrics.neg).toBe(-SQL_MAX);
  const hist = r1.history['train/loss'];
  expect(hist.length).toBe(50);
  hist.forEach((h: [number, number, number], i: number) => {
    expect(h[0]).toBe(i);
    expect(h[1]).toBeCloseTo(1 / (i + 1));
    expect(h[2]).toBe(1_700_000_000_000 + i);
  });
  expect(r1.history.special.map((h: any[]) => [h[0], h[1]])).toEqual([[0, 'nan'], [1, SQL_MAX]]);
  expect(r1.artifacts_error).toBeUndefined();
  expect(r1.artifacts.sort()).toEqual(w.artifacts);
  const r2 = runs[w.run2];
  expect(r2.status).toBe('FAILED');
  expect(r2.run_name).toBe('failed-run');
  expect(r2.metrics['val/loss']).toBeCloseTo(0.01);
  const m = py.models[0];
  expect(m.name).toBe(w.model);
  expect(m.description).toBe('first');
  expect(m.tags).toEqual({ k: 'v' });
  expect(Object.fromEntries(Object.entries(m.aliases).map(([k, v]) => [k, String(v)]))).toEqual({ champion: '2' });
  expect(m.versions.map((v: any) => [String(v.version), v.stage, v.run_id, v.status])).toEqual([
    ['1', 'Archived', w.run1, 'READY'],
    ['2', 'Staging', w.run1, 'READY'],
  ]);
  expect(m.versions[0].source).toBe(`${w.run1ArtifactUri}/models`);
  expect(m.versions[0].description).toBe('first');
  expect(m.versions[0].tags).toEqual({ k: 'v' });
  expect(m.versions[1].aliases).toEqual(['champion']);
  expect(m.latest.map((l: any[]) => [String(l[0]), l[1]])).toEqual([['1', 'Archived'], ['2', 'Staging']]);
}
