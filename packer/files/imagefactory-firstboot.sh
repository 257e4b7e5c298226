#!/usr/bin/env bash
# imagefactory-firstboot: per-instance secrets that the image must not carry, made at boot.
set -euo pipefail
ssh-keygen -A
if command -v make-ssl-cert >/dev/null 2>&1 && [[ ! -e /etc/ssl/private/ssl-cert-snakeoil.key ]]; then
    make-ssl-cert generate-default-snakeoil
fi
