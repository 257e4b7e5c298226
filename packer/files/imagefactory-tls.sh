# shellcheck shell=sh
# Installed as /etc/profile.d/imagefactory-tls.sh: pip, uv and requests use the system trust store,
# which holds any extra CA the image was built with.
export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
export REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
export PIP_CERT=/etc/ssl/certs/ca-certificates.crt
