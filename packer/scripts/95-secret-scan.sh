#!/usr/bin/env bash
# 95-secret-scan: refuse to save an image that holds cloud credentials, private keys or a JupyterLab
# token. Scans /home /root /etc /opt /srv /var/lib /usr/local (not package-managed trees); prints the
# file and the kind of secret only, never the secret, and exits non-zero on any hit. On a clean scan,
# removes the uploaded provision folder ($IF_DIR), the last build file in the image.
set -euo pipefail
IF_STAGE=95-secret-scan
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${IF_DIR:?IF_DIR is not set}/scripts/lib.sh"

if_log "scanning for secrets"
token_file=$(if_get jupyter.token_file)
if ! python3 "$IF_DIR/files/if_secret_scan.py" --exclude "$IF_DIR" --token-file "$token_file" \
    /home /root /etc /opt /srv /var/lib /usr/local; then
    if_die "secrets found in the image (files listed above); remove them from the repo or post-build output"
fi
rm -rf -- "$IF_DIR"
if_log "clean; removed $IF_DIR"
