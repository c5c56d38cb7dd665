#!/usr/bin/env bash
# Rebuild JupyterLab's LakeHub extension (labextension/: the "Publish Notebook as a Read-Only
# Page" command) into src/lakehub/singleuser/labextension, the prebuilt files the package ships
# (a notebook environment installs them; nothing is built at install time). Needs Node.js, npm
# and the checkout's .venv (JupyterLab's builder).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/lakehub-labext-XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r "$root/labextension/." "$work/"
(cd "$work" && npm install --no-audit --no-fund --silent \
    && PATH="$root/.venv/bin:$PATH" jupyter labextension build .)
rm -rf "$root/src/lakehub/singleuser/labextension"
cp -r "$work/out" "$root/src/lakehub/singleuser/labextension"
echo "built into src/lakehub/singleuser/labextension"
