#!/usr/bin/env bash
# What moe-bench needs beyond the build: PyTorch for the torch baseline and matplotlib for
# --plot. Both are optional at run time (moe-bench reports them unavailable), so CI skips them.
set -euo pipefail
bash "$(dirname "$0")/install-deps.sh"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends python3-torch python3-matplotlib >/dev/null
echo "install-bench-deps: python3-torch and python3-matplotlib present"
