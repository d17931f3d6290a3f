"""Reads a run's dataset inputs and system metric histories with the pinned Python MLflow, and computes what
Python MLflow itself writes for a NumPy dataset of given shapes (the reference for our schema and profile).

Usage: run_inputs.py <json request on stdin>; prints "@@JSON@@" and one JSON document on stdout.
  {"tracking_uri": ..., "run_ids": [...], "numpy": [{"features": [n, ...], "targets": [n, ...], "targets_dtype": "float32"}]}
"""
import json
import sys
import warnings

warnings.filterwarnings("ignore")
import logging

logging.disable(logging.WARNING)


def main():
    req = json.loads(sys.stdin.read())
    import mlflow
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=req["tracking_uri"])
    runs = {}
    for run_id in req.get("run_ids", []):
        run = c.get_run(run_id)
        inputs = [
            {
                "name": di.dataset.name, "digest": di.dataset.digest, "source_type": di.dataset.source_type,
                "source": di.dataset.source, "schema": di.dataset.schema, "profile": di.dataset.profile,
                "tags": {t.key: t.value for t in di.tags},
            }
            for di in run.inputs.dataset_inputs
        ]
        system = {}
        for key in sorted(k for k in run.data.metrics if k.startswith("system/")):
            system[key] = [
                {"step": m.step, "value": m.value, "timestamp": m.timestamp} for m in c.get_metric_history(run_id, key)
            ]
        runs[run_id] = {"inputs": inputs, "system": system, "end_time": run.info.end_time, "status": run.info.status}
    numpy = []
    if req.get("numpy"):
        import numpy as np  # not in the MLflow 2.9 test venv (mlflow-skinny)
    for spec in req.get("numpy", []):
        ds = mlflow.data.from_numpy(
            np.zeros(spec["features"], np.float32),
            targets=np.zeros(spec["targets"], getattr(np, spec.get("targets_dtype", "float32"))),
        )
        d = ds.to_dict()
        numpy.append({"schema": d["schema"], "profile": d["profile"]})
    sys.stdout.write("\n@@JSON@@" + json.dumps({"runs": runs, "numpy": numpy}) + "\n")


if __name__ == "__main__":
    main()
