#!/usr/bin/env bash
# 30-server-env: the server env ($IF_SERVER) with a current JupyterLab and the recipe's extensions, on
# the system python3, so old kernel pins never fight a modern JupyterLab.
set -euo pipefail
IF_STAGE=30-server-env
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${IF_DIR:?IF_DIR is not set}/scripts/lib.sh"

mapfile -d '' -t extensions < <(if_list jupyter.extensions)
if_log "creating the server env in $IF_SERVER"
rm -rf "$IF_SERVER"
uv venv --quiet --python /usr/bin/python3 "$IF_SERVER"
if_log "installing jupyterlab ${extensions[*]}"
uv pip install --python "$IF_SERVER/bin/python" jupyterlab "${extensions[@]}"
# ipykernel (a JupyterLab dependency) ships a `python3` kernelspec for the server env itself; only the
# recipe's kernel should be offered.
rm -rf "$IF_SERVER/share/jupyter/kernels/python3"
if_log "jupyterlab $("$IF_SERVER/bin/jupyter-lab" --version)"
