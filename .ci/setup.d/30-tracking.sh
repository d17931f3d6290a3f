# Test services of the MLflow tracker (issue 3): PostgreSQL binaries come from 10-system, mlflow/moto from
# 20-python; here the MinIO server (the S3-compatible server the Heimdall deployment used), built once from
# source through the Go module proxy and cached, so re-runs are instant. Pinned to one commit.
MINIO_MODULE="github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c"
minio_bin="$HEIMDALL_CACHE/bin/minio"
minio_stamp="$HEIMDALL_CACHE/bin/minio.module"
if [ -x "$minio_bin" ] && [ "$(cat "$minio_stamp" 2>/dev/null)" = "$MINIO_MODULE" ]; then
  :
elif command -v go >/dev/null 2>&1; then
  echo "building MinIO ($MINIO_MODULE; about 5 min on 2 cores the first time)"
  mkdir -p "$HEIMDALL_CACHE/bin"
  if GOBIN="$HEIMDALL_CACHE/bin" nice -n 10 go install "$MINIO_MODULE"; then
    echo "$MINIO_MODULE" > "$minio_stamp"
  else
    echo "MinIO build failed: the S3 tests will use moto's server instead" >&2
  fi
else
  echo "no Go toolchain: the S3 tests will use moto's server instead of MinIO" >&2
fi
[ -x "$minio_bin" ] && export HEIMDALL_MINIO_BIN="$minio_bin"
true

# MLflow 2.9 (the oldest schema the SQL store supports), in its own small venv: a test creates a database
# with it, writes into it with heimdall-torch and reads it back with the 2.9 client.
mlflow29="$HEIMDALL_CACHE/venv-mlflow-2.9"
mlflow29_pins="mlflow-skinny==2.9.2 SQLAlchemy==2.0.58 alembic==1.13.3"
if [ "$(cat "$mlflow29/.pins" 2>/dev/null)" != "$mlflow29_pins" ]; then
  rm -rf "$mlflow29"
  ${PYTHON:-python3} -m venv "$mlflow29"
  # shellcheck disable=SC2086
  "$mlflow29/bin/pip" install -q --disable-pip-version-check $mlflow29_pins
  echo "$mlflow29_pins" > "$mlflow29/.pins"
fi
export HEIMDALL_MLFLOW29_PYTHON="$mlflow29/bin/python"
true

# openssl makes the self-signed certificate of the TLS test (normally part of the base image).
if ! command -v openssl >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends openssl >/dev/null
fi
true
