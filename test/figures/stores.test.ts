// Figures in the other stores: a classification fit + test tracked in PostgreSQL with S3 (MinIO) artifacts, and on
// the MLflow server over REST with its proxied artifacts. The pinned Python MLflow reads the images back in
// `mlflow.log_image`'s layout (key, step, thumbnail), the tag the UI reads, and the plain figure artifacts, and
// Pillow decodes the images it downloads.
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { ConvNeXt } from '../../lib/model.js';
import { MLflowLogger, TensorDataModule, Trainer } from '../../lib/trainer/index.js';
import type { MLflowTrackerOptions } from '../../lib/tracking/index.js';
import { python } from '../helpers/python.js';
import { tempDir } from '../helpers/tmp.js';
import { blobs } from '../native/fixtures.js';
import { createPgDatabase } from '../tracking/helpers/services.js';

const base = { device: 'cpu', threads: 2, enableProgressBar: false, enableModelSummary: false, handleSignals: false, optimizer: { name: 'adamw' as const, lr: 2e-3 } };

interface Store { tracker: MLflowTrackerOptions; pythonUri: string; pythonEnv: Record<string, string> }

const stores: { name: string; make: () => Promise<Store> }[] = [
  {
    name: 'PostgreSQL with S3 artifacts',
    make: async () => {
      const s3 = inject('s3');
      const bucket = `heimdall-fig-${Date.now().toString(36)}`;
      const client = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } });
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      client.destroy();
      const uri = await createPgDatabase(inject('pgUri'), 'figures');
      return {
        tracker: { trackingUri: uri, artifactUri: `s3://${bucket}/mlflow`, s3EndpointUrl: s3.endpoint, awsAccessKeyId: s3.accessKeyId, awsSecretAccessKey: s3.secretAccessKey, awsRegion: 'us-east-1' },
        pythonUri: uri.replace(/^postgresql:\/\//, 'postgresql+psycopg2://'),
        pythonEnv: { MLFLOW_S3_ENDPOINT_URL: s3.endpoint, AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_DEFAULT_REGION: 'us-east-1' },
      };
    },
  },
  {
    name: 'the MLflow server (REST, proxied artifacts)',
    make: async () => ({ tracker: { trackingUri: inject('mlflowUri'), experimentName: `figures-rest-${Date.now().toString(36)}` }, pythonUri: inject('mlflowUri'), pythonEnv: {} }),
  },
];

describe.each(stores)('figures in $name', ({ make }) => {
  it('the confusion matrix and training curves are MLflow images with thumbnails, and plain figure artifacts', async () => {
    const store = await make();
    const dir = tempDir();
    const n = 48;
    const { inputs, targets } = blobs(n, 13);
    const classes = Int32Array.from({ length: n }, (_, i) => (targets[2 * i]! > 0 ? 1 : 0));
    const data = new TensorDataModule(inputs, [n, 3, 32, 32], classes, [n], { batchSize: 16, seed: 3 });
    const logger = new MLflowLogger({ runName: 'figures-store', trackerOptions: { ...store.tracker, dotenvPath: false } });
    const trainer = new Trainer({ ...base, maxEpochs: 1, defaultRootDir: dir, logger, logSystemMetrics: false });
    try {
      await trainer.fit(ConvNeXt.classification('atto', 2, { seed: 13 }), data);
      await trainer.test();
    } finally {
      await logger.close();
    }
    const out = JSON.parse(await python(`
import sys, json, os
os.environ.update(json.loads(sys.argv[4]))
import mlflow
from PIL import Image, ImageStat
c = mlflow.MlflowClient(sys.argv[1])
r = c.get_run(sys.argv[2])
images = sorted(a.path for a in c.list_artifacts(r.info.run_id, 'images'))
figs = sorted(a.path for a in c.list_artifacts(r.info.run_id, 'figures'))
decoded = []
for p in images:
    im = Image.open(c.download_artifacts(r.info.run_id, p, sys.argv[3])); im.load()
    decoded.append({'path': p, 'format': im.format, 'size': list(im.size), 'std': ImageStat.Stat(im.convert('L')).stddev[0]})
print(json.dumps({'status': r.info.status, 'tag': r.data.tags.get('mlflow.loggedImages'), 'figures': figs, 'images': decoded,
                  'step': c.get_metric_history(r.info.run_id, 'test/loss')[-1].step}))
`, [store.pythonUri, logger.runId!, tempDir(), JSON.stringify(store.pythonEnv)]));
    expect(out.status).toBe('FINISHED');
    expect(out.tag).toBe('True');
    expect(out.figures).toEqual(['confusion_matrix', 'training_curves'].flatMap((f) => [`figures/${f}.png`, `figures/${f}.svg`, `figures/${f}.vl.json`]));
    const images = (out.images as Array<{ path: string; format: string; size: [number, number]; std: number }>).map((im) => {
      const m = /^images\/([^+]+)\+step\+(\d+)\+timestamp\+\d+\+[0-9a-f-]{36}(\+compressed)?\.(png|webp)$/.exec(im.path);
      expect(m, im.path).not.toBeNull();
      return { ...im, key: m![1]!.replace(/~/g, '/'), step: Number(m![2]), thumbnail: Boolean(m![3]) };
    });
    expect(images.filter((i) => !i.thumbnail).map((i) => i.key).sort()).toEqual(['test/confusion_matrix', 'train/loss_and_lr']);
    expect(images.filter((i) => i.thumbnail).map((i) => i.key).sort()).toEqual(['test/confusion_matrix', 'train/loss_and_lr']);
    for (const im of images) {
      expect(im.step).toBe(out.step); // the step the test metrics are logged at
      expect(im.format).toBe(im.thumbnail ? 'WEBP' : 'PNG');
      if (im.thumbnail) expect(Math.max(...im.size)).toBe(256);
      else expect(Math.max(...im.size)).toBeGreaterThan(1000);
      expect(im.std).toBeGreaterThan(10); // not blank
    }
  }, 240_000);
});
