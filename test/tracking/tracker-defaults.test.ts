// What the tracker adds on its own: the default run tags (no domain defaults: what model a run trains is the
// caller's to say), and its errors, which are HeimdallErrors with MLflow's codes, also after crossing the worker.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HeimdallError } from '../../lib/errors.js';
import { DEFAULT_RUN_TAGS, MlflowError, MLflowTracker } from '../../lib/tracking/index.js';
import { deserializeError, serializeError } from '../../lib/tracking/protocol.js';
import { cleanupTmp, tmp, trackerOptions } from './helpers/scenario.js';

afterAll(cleanupTmp);

const sqliteTracker = (extra = {}) => new MLflowTracker(trackerOptions(`sqlite:///${join(tmp('defaults'), 'm.db')}`, extra));

describe('default run tags', () => {
  it('are phase and service only: no model tag unless the caller gives one', async () => {
    expect(DEFAULT_RUN_TAGS).toEqual({ phase: 'training', service: 'training' });
    const t = sqliteTracker();
    try {
      await t.startRun({ runName: 'plain' });
      const tags = (await t.getRunInfo()).tags;
      expect(tags).toMatchObject({ phase: 'training', service: 'training', 'mlflow.runName': 'plain' });
      expect(tags).not.toHaveProperty('model');
    } finally {
      await t.close();
    }
  });

  it('callers still set tags for every run (defaultTags) and per run (startRun tags win)', async () => {
    const t = sqliteTracker({ defaultTags: { model: 'ConvNeXt', service: 'inference' } });
    try {
      await t.startRun({ runName: 'first' });
      expect((await t.getRunInfo()).tags).toMatchObject({ model: 'ConvNeXt', service: 'inference', phase: 'training' });
      await t.endRun();
      await t.startRun({ runName: 'second', tags: { model: 'LocalizationNet' } });
      expect((await t.getRunInfo()).tags.model).toBe('LocalizationNet');
    } finally {
      await t.close();
    }
  });
});

describe('MlflowError', () => {
  it('is a HeimdallError with MLflow\'s code, retryable and httpStatus', () => {
    const e = new MlflowError('busy', 'TEMPORARILY_UNAVAILABLE', { retryable: true, httpStatus: 503 });
    expect(e).toBeInstanceOf(HeimdallError);
    expect(e).toBeInstanceOf(Error);
    expect([e.name, e.code, e.retryable, e.httpStatus, e.message]).toEqual(['MlflowError', 'TEMPORARILY_UNAVAILABLE', true, 503, 'busy']);
    expect(new MlflowError('x').code).toBe('INTERNAL_ERROR');
  });

  it('crosses the thread boundary with MLflow\'s codes only: a driver\'s code becomes one of them', () => {
    const roundTrip = (e: unknown) => deserializeError(serializeError(e));
    const refused = roundTrip(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }));
    expect(refused).toBeInstanceOf(MlflowError);
    expect([(refused as MlflowError).code, (refused as MlflowError).retryable]).toEqual(['TEMPORARILY_UNAVAILABLE', true]);
    const constraint = roundTrip(Object.assign(new Error('duplicate key'), { code: '23505' }));
    expect([(constraint as MlflowError).code, (constraint as MlflowError).retryable]).toEqual(['INTERNAL_ERROR', false]);
    const busy = roundTrip(new MlflowError('slow down', 'REQUEST_LIMIT_EXCEEDED', { retryable: true }));
    expect([busy.name, (busy as MlflowError).code, (busy as MlflowError).retryable, busy.message]).toEqual(['MlflowError', 'REQUEST_LIMIT_EXCEEDED', true, 'slow down']);
    const plain = roundTrip(new TypeError('bug'));
    expect([plain instanceof MlflowError, plain.name, plain.message]).toEqual([false, 'TypeError', 'bug']);
  });

  it('keeps its class and code when the worker answers a request with it', async () => {
    const t = sqliteTracker();
    try {
      await t.startRun({ runName: 'errors' });
      const err = await t.getRun('0123456789abcdef0123456789abcdef').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MlflowError);
      expect(err).toBeInstanceOf(HeimdallError);
      expect((err as MlflowError).code).toBe('RESOURCE_DOES_NOT_EXIST');
    } finally {
      await t.close();
    }
  });
});
