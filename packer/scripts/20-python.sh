#!/usr/bin/env bash
# 20-python: uv from PyPI in a tool venv ($IF_TOOLS), linked as /usr/local/bin/uv; micromamba when the
# recipe has conda files.
set -euo pipefail
IF_STAGE=20-python
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${IF_DIR:?IF_DIR is not set}/scripts/lib.sh"

MICROMAMBA_URL=https://micro.mamba.pm/api/micromamba/linux-64/latest

if [[ ! -x $IF_TOOLS/bin/uv ]]; then
    if_log "installing uv into $IF_TOOLS"
    python3 -m venv "$IF_TOOLS"
    "$IF_TOOLS/bin/python" -m pip install --quiet --no-cache-dir uv tomli
fi
ln -sf "$IF_TOOLS/bin/uv" /usr/local/bin/uv
if_log "$(uv --version)"

mapfile -d '' -t conda_files < <(if_list conda)
if ((${#conda_files[@]} > 0)) && [[ ! -x $IF_PREFIX/bin/micromamba ]]; then
    if_log "installing micromamba from $MICROMAMBA_URL"
    tmp=$(mktemp -d)
    curl -fsSL --retry 3 -o "$tmp/micromamba.tar.bz2" "$MICROMAMBA_URL"
    tar -xjf "$tmp/micromamba.tar.bz2" -C "$tmp" bin/micromamba
    install -m 0755 "$tmp/bin/micromamba" "$IF_PREFIX/bin/micromamba"
    rm -rf "$tmp"
    if_log "micromamba $("$IF_PREFIX/bin/micromamba" --version)"
fi
if_log "done"
