# npm dependencies, from the lockfile. onnxruntime-node (a devDependency here, an optional peer dependency of the
# package) must not try to download CUDA files from NuGet (offline): its install script is told to skip.
export ONNXRUNTIME_NODE_INSTALL=skip
stamp=node_modules/.package-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  npm ci --no-audit --no-fund
  echo "$want" > "$stamp"
fi
