#!/usr/bin/env bash
# 10-base: install the base apt packages plus the recipe's `apt` list, and write the TLS environment for
# later logins (05-prepare has waited for cloud-init and trusted extra-ca.pem).
set -euo pipefail
IF_STAGE=10-base
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${IF_DIR:?IF_DIR is not set}/scripts/lib.sh"

BASE_PACKAGES=(ca-certificates curl git bzip2 procps sudo systemd python3 python3-venv python3-pip)

mapfile -d '' -t recipe_apt < <(if_list apt)
apt_get=(apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 -o Dpkg::Use-Pty=0)
if_log "apt-get update"
"${apt_get[@]}" update -q
if_log "installing: ${BASE_PACKAGES[*]} ${recipe_apt[*]}"
"${apt_get[@]}" install -y -q --no-install-recommends "${BASE_PACKAGES[@]}" "${recipe_apt[@]}"

install -d -m 0755 "$IF_STATE" "$IF_PREFIX" "$IF_PREFIX/bin"
install -m 0644 "$IF_DIR/files/imagefactory-tls.sh" /etc/profile.d/imagefactory-tls.sh
if_log "done"
