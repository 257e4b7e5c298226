#!/usr/bin/env bash
# imagefactory-token: make this instance's JupyterLab token if it has none yet. Runs as the login user
# (ExecStartPre of imagefactory-jupyter.service); the file is readable by that user only. The token is
# never baked: the image is saved before the service first starts, and 95-secret-scan checks.
set -euo pipefail
token_file=${JUPYTER_TOKEN_FILE:?JUPYTER_TOKEN_FILE is not set}
if [[ -s $token_file ]]; then
    exit 0
fi
umask 077
mkdir -p -- "$(dirname -- "$token_file")"
tmp=$(mktemp -- "$token_file.XXXXXX")
od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$tmp"
mv -f -- "$tmp" "$token_file"
