#!/usr/bin/env bash
# 05-prepare: wait for cloud-init (on a fresh instance it may still be setting the machine up) and
# trust extra-ca.pem if given. Runs in every build, full or incremental (an incremental build starts
# from its parent's image and skips 10-base … 40-kernel-env, the environment install).
set -euo pipefail
IF_STAGE=05-prepare
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${IF_DIR:?IF_DIR is not set}/scripts/lib.sh"

if command -v cloud-init >/dev/null 2>&1; then
    if_log "waiting for cloud-init to finish"
    cloud-init status --wait >/dev/null || true
fi

if [[ -f $IF_DIR/extra-ca.pem ]]; then
    if_log "trusting extra-ca.pem"
    install -m 0644 "$IF_DIR/extra-ca.pem" /usr/local/share/ca-certificates/imagefactory-extra.crt
    update-ca-certificates
fi
if_log "done"
