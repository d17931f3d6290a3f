"""The anchor: the pinned Python MLflow client logging metric points into a store.

python_client.py <tracking_uri> <mode: per-point|batch|async> <points>
Prints one JSON line {"mode", "points", "seconds"}; the time excludes interpreter start and run creation,
and includes waiting until everything is stored (async mode: flush).
"""
import json
import sys
import time
import logging
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric


def main():
    uri, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    c = MlflowClient(tracking_uri=uri)
    name = "bench-python"
    exp = c.get_experiment_by_name(name)
    eid = exp.experiment_id if exp else c.create_experiment(name)
    run_id = c.create_run(eid, run_name=f"python-{mode}").info.run_id
    keys = ["train/loss", "train/mae", "val/loss", "lr"]
    t0 = time.perf_counter()
    ts = int(time.time() * 1000)
    if mode == "per-point":
        for i in range(n):
            c.log_metric(run_id, keys[i % 4], 1.0 / (i + 1), timestamp=ts, step=i // 4)
    elif mode == "batch":
        batch = []
        for i in range(n):
            batch.append(Metric(keys[i % 4], 1.0 / (i + 1), ts, i // 4))
            if len(batch) == 1000:
                c.log_batch(run_id, metrics=batch)
                batch = []
        if batch:
            c.log_batch(run_id, metrics=batch)
    elif mode == "async":
        for i in range(n):
            c.log_metric(run_id, keys[i % 4], 1.0 / (i + 1), timestamp=ts, step=i // 4, synchronous=False)
        mlflow.flush_async_logging()
    else:
        raise SystemExit(f"unknown mode {mode}")
    dt = time.perf_counter() - t0
    c.set_terminated(run_id)
    print(json.dumps({"mode": mode, "points": n, "seconds": dt}))


if __name__ == "__main__":
    main()
