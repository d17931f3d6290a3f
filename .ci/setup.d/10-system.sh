# System packages (Debian). Only installs what is missing.
# libgloo-dev: Gloo's headers, which ProcessGroupGloo.hpp includes and the torch wheel lacks (native/dist/gloo.cc);
# without them the addon builds without distributed training on CPU.
need=()
# fonts-dejavu-core: the font the figures (lib/figures) are drawn with.
for pkg in build-essential cmake ninja-build ccache git python3-venv postgresql xz-utils fonts-dejavu-core libgloo-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
