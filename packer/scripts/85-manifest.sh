#!/usr/bin/env bash
# 85-manifest: /etc/imagefactory/manifest.json (repo, commit, recipe digest, build id, resolved kernel
# packages, Python and JupyterLab versions, Packer and factory versions, time). Packer downloads it
# right after this stage, before 90-cleanup.
set -euo pipefail
IF_STAGE=85-manifest
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${IF_DIR:?IF_DIR is not set}/scripts/lib.sh"

install -d -m 0755 "$IF_STATE"
python3 "$IF_DIR/files/if_manifest.py" "$IF_CONFIG" "$(if_repo_dir)" "$IF_STATE/manifest.json"
