# The project's .venv: pinned torch (its libtorch is what the addon builds and runs against) and the
# test-only reference packages. Re-installs only when .ci/requirements.txt changes.
py=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$py" -m venv .venv
stamp=.venv/.requirements.sha256
want=$(sha256sum .ci/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r .ci/requirements.txt
  echo "$want" > "$stamp"
fi
