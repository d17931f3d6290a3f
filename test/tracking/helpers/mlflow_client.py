"""Reads back (or writes) MLflow data with the pinned Python MLflow client, for the tracking tests.

Usage: mlflow_client.py <json request on stdin>; prints one JSON document on stdout.
  {"op": "read", "tracking_uri": ..., "experiment": name, "models": [names], "history_keys": [keys]}
  {"op": "write", "tracking_uri": ..., "experiment": name}
  {"op": "columns", "tracking_uri": ...}   (MLflow's own migrations on an empty DB, then the columns)
  {"op": "logged_models", "tracking_uri": ..., "experiment": name, "run_id": id, "input": {name, shape}, "registered": name}
      (search_logged_models, get_logged_model, the run's outputs, pyfunc.load_model('models:/<id>') and
       'runs:/<id>/model' predictions on an input of ones, the registered version's source and run)
"""
import json
import math
import os
import sys
import warnings

warnings.filterwarnings("ignore")
import logging

logging.disable(logging.WARNING)


def num(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return str(v)
    return v


def read(req):
    import mlflow
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=req["tracking_uri"], registry_uri=req.get("registry_uri", req["tracking_uri"]))
    exp = c.get_experiment_by_name(req["experiment"])
    out = {"experiment": None, "runs": [], "models": []}
    if exp is None:
        return out
    out["experiment"] = {
        "id": exp.experiment_id, "name": exp.name, "artifact_location": exp.artifact_location,
        "lifecycle_stage": exp.lifecycle_stage, "tags": exp.tags,
    }
    for r in c.search_runs([exp.experiment_id], max_results=1000):
        run = {
            "run_id": r.info.run_id, "run_name": r.info.run_name, "status": r.info.status,
            "start_time": r.info.start_time, "end_time": r.info.end_time, "artifact_uri": r.info.artifact_uri,
            "user_id": r.info.user_id, "lifecycle_stage": r.info.lifecycle_stage,
            "params": r.data.params, "tags": r.data.tags,
            "metrics": {k: num(v) for k, v in r.data.metrics.items()},
            "history": {},
            "artifacts": [],
        }
        for key in req.get("history_keys", []):
            hist = c.get_metric_history(r.info.run_id, key)
            run["history"][key] = [[m.step, num(m.value), m.timestamp] for m in sorted(hist, key=lambda m: (m.step, m.timestamp))]
        if req.get("artifacts", True):
            def walk(path):
                for f in c.list_artifacts(r.info.run_id, path):
                    if f.is_dir:
                        walk(f.path)
                    else:
                        run["artifacts"].append([f.path, f.file_size])
            try:
                walk(None)
            except Exception as e:  # noqa: BLE001
                run["artifacts_error"] = str(e)
        out["runs"].append(run)
    for name in req.get("models", []):
        m = c.get_registered_model(name)
        versions = []
        for sv in c.search_model_versions(f"name='{name}'"):
            v = c.get_model_version(name, sv.version)
            versions.append({
                "version": v.version, "stage": v.current_stage, "source": v.source, "run_id": v.run_id,
                "status": v.status, "description": v.description, "tags": v.tags, "aliases": sorted(v.aliases),
            })
        out["models"].append({
            "name": m.name, "description": m.description, "tags": m.tags, "aliases": m.aliases,
            "versions": sorted(versions, key=lambda v: int(v["version"])),
            "latest": sorted([[v.version, v.current_stage] for v in c.get_latest_versions(name)]),
        })
    return out


def write(req):
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    c = MlflowClient(tracking_uri=req["tracking_uri"])
    exp = c.get_experiment_by_name(req["experiment"])
    eid = exp.experiment_id if exp else c.create_experiment(req["experiment"])
    run = c.create_run(eid, run_name="written-by-python", tags={"origin": "python"})
    rid = run.info.run_id
    c.log_batch(rid, metrics=[Metric("val/loss", 1.0 / (s + 1), 1700000000000 + s, s) for s in range(5)],
                params=[Param("lr", "0.01"), Param("optimizer", "sgd")], tags=[RunTag("stage", "test")])
    c.log_metric(rid, "nan_metric", float("nan"), step=0)
    c.log_metric(rid, "inf_metric", float("inf"), step=0)
    c.set_terminated(rid, "FINISHED")
    return {"experiment_id": eid, "run_id": rid}


def columns(req):
    """Runs the pinned MLflow's migrations on an empty database and returns its tables and columns."""
    import sqlalchemy
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore

    uri = req["tracking_uri"]
    SqlAlchemyStore(uri, "/tmp/unused-artifacts")
    RegistryStore(uri)
    return describe(uri)


def describe(uri):
    import sqlalchemy
    eng = sqlalchemy.create_engine(uri)
    insp = sqlalchemy.inspect(eng)
    out = {}
    for t in sorted(insp.get_table_names()):
        cols = []
        for col in insp.get_columns(t):
            d = col.get("default")
            cols.append([col["name"], str(col["type"]).upper(), bool(col["nullable"]), None if d is None else str(d)])
        pk = insp.get_pk_constraint(t).get("constrained_columns") or []
        fks = sorted([[fk["referred_table"], ",".join(fk["constrained_columns"]), ",".join(fk["referred_columns"])] for fk in insp.get_foreign_keys(t)])
        idx = sorted([[i["name"] or "", ",".join(c or "" for c in i["column_names"]), bool(i["unique"])] for i in insp.get_indexes(t)])
        uqs = sorted([",".join(u["column_names"]) for u in insp.get_unique_constraints(t)])
        try:
            checks = sorted(" ".join(str(c.get("sqltext", "")).split()) for c in insp.get_check_constraints(t))
        except NotImplementedError:
            checks = []
        out[t] = {"columns": cols, "pk": pk, "fks": fks, "indexes": idx, "unique": uqs, "checks": checks}
    with eng.connect() as conn:
        rev = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar()
    eng.dispose()
    return {"tables": out, "revision": rev}


def logged_models(req):
    import numpy as np
    import mlflow
    from mlflow import MlflowClient

    uri = req["tracking_uri"]
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = c.get_experiment_by_name(req["experiment"])
    found = mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list")
    out = {"experiment_tags": exp.tags, "models": []}
    for lm in found:
        m = mlflow.get_logged_model(lm.model_id)
        out["models"].append({
            "model_id": m.model_id, "name": m.name, "status": str(m.status), "source_run_id": m.source_run_id,
            "artifact_location": m.artifact_location, "experiment_id": m.experiment_id, "tags": m.tags,
            "params": m.params,
            "metrics": sorted([[x.key, num(x.value), x.step, x.run_id, x.dataset_name, x.dataset_digest] for x in (m.metrics or [])]),
            "artifacts": sorted(f.path for f in c.list_logged_model_artifacts(m.model_id)),
        })
    run = c.get_run(req["run_id"])
    out["run_outputs"] = [[o.model_id, o.step] for o in (run.outputs.model_outputs if run.outputs else [])]
    out["run_tags"] = run.data.tags
    out["run_artifacts"] = sorted(f.path for f in c.list_artifacts(req["run_id"]))
    inp = req.get("input")
    if inp and found:
        x = np.ones(inp["shape"], dtype=np.float32)
        from mlflow.models import Model
        for key, model_uri in [("by_id", f"models:/{found[0].model_id}"), ("by_run", f"runs:/{req['run_id']}/model")]:
            pm = mlflow.pyfunc.load_model(model_uri)
            y = pm.predict({inp["name"]: x})
            out[key] = {k: np.asarray(v).astype(float).ravel().tolist() for k, v in y.items()}
            out[key + "_model_id"] = pm.metadata.model_id
    if req.get("registered"):
        name = req["registered"]
        vs = sorted(c.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
        out["versions"] = [{"version": v.version, "source": v.source, "run_id": v.run_id, "status": v.status,
                            "model_id": getattr(v, "model_id", None)} for v in vs]
        reg = mlflow.pyfunc.load_model(f"models:/{name}/{vs[-1].version}")
        out["registered_model_id"] = reg.metadata.model_id
    return out


def main():
    req = json.loads(sys.stdin.read())
    op = req["op"]
    if op == "read":
        res = read(req)
    elif op == "write":
        res = write(req)
    elif op == "columns":
        res = columns(req)
    elif op == "logged_models":
        res = logged_models(req)
    elif op == "describe":
        res = describe(req["tracking_uri"])
    else:
        raise SystemExit(f"unknown op {op}")
    sys.stdout.write("\n@@JSON@@" + json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
