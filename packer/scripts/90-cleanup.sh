#!/usr/bin/env bash
# 90-cleanup: leave nothing per-build or per-machine in the image: apt, pip, uv and micromamba caches;
# every authorized_keys (the build key; launch keys are added per instance by cloud-init or the sandbox
# launcher); ssh host keys and the snakeoil key (remade at first boot); shell and IPython histories;
# machine-id; cloud-init's state (cloud-init itself stays installed and enabled); the build's checkout
# copies. Packer's open SSH session survives the key removal; this runs after the manifest download and
# before 95-secret-scan, which still needs $IF_DIR/scripts and $IF_DIR/files and removes $IF_DIR itself.
set -euo pipefail
IF_STAGE=90-cleanup
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${IF_DIR:?IF_DIR is not set}/scripts/lib.sh"

if_log "package caches"
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/imagefactory "$MAMBA_ROOT_PREFIX/pkgs"
homes=(/root)
while IFS=: read -r _ _ uid _ _ home _; do
    if ((uid >= 1000)) && [[ -d $home && $home == /home/* ]]; then
        homes+=("$home")
    fi
done </etc/passwd
for home in "${homes[@]}"; do
    rm -rf "$home/.cache/pip" "$home/.cache/uv" "$home/.bash_history" "$home/.python_history" \
        "$home/.lesshst" "$home/.viminfo" "$home/.wget-hsts" "$home/.ipython/profile_default/history.sqlite"
    if [[ -f $home/.ssh/authorized_keys ]]; then
        if_log "emptying $home/.ssh/authorized_keys"
        : >"$home/.ssh/authorized_keys"
    fi
done

if_log "ssh host keys, machine-id, cloud-init state"
rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub
rm -f /etc/ssl/private/ssl-cert-snakeoil.key /etc/ssl/certs/ssl-cert-snakeoil.pem
if [[ -f /etc/machine-id ]]; then
    : >/etc/machine-id
fi
if [[ -f /var/lib/dbus/machine-id && ! -L /var/lib/dbus/machine-id ]]; then
    rm -f /var/lib/dbus/machine-id
fi
# cloud-init stays enabled: at each new instance's first boot it installs the launch key and writes the
# user data's /etc/imagefactory/autostop-minutes. Cleaning its state makes it run again there.
if command -v cloud-init >/dev/null 2>&1; then
    if [[ -e /etc/cloud/cloud-init.disabled ]]; then
        if_die "cloud-init is disabled (/etc/cloud/cloud-init.disabled); instances need it for their launch key and auto-stop setting"
    fi
    cloud-init clean --logs
elif [[ $(if_get target) == aws ]]; then
    if_die "cloud-init is missing; AWS instances need it for their launch key and auto-stop setting"
fi

if_log "build files"
rm -rf "$IF_DIR/src" "$IF_DIR/repo.git" "$IF_DIR/repo.tar" "$IF_DIR/pipfile-requirements.txt"
unset HISTFILE
if_log "done"
