# shellcheck shell=bash
# Shared helpers for the provisioning stages. Sourced, never run by Packer on its own.
#
# Every stage runs as root with IF_CONFIG (the JSON config written by imagefactory/provision.py) and
# IF_DIR (the uploaded provision folder) in the environment. Values come only from the config, through
# if_get / if_list, never from text spliced into a script.

IF_DIR=${IF_DIR:-/tmp/imagefactory}
IF_CONFIG=${IF_CONFIG:-$IF_DIR/config.json}
IF_PREFIX=/opt/imagefactory
IF_SERVER=$IF_PREFIX/server
IF_KERNEL=$IF_PREFIX/kernel
IF_TOOLS=$IF_PREFIX/tools
IF_STATE=/etc/imagefactory
IF_STAGE=${IF_STAGE:-stage}
export IF_DIR IF_CONFIG IF_PREFIX IF_SERVER IF_KERNEL IF_TOOLS IF_STATE IF_STAGE

# `sudo -E` keeps the login user's HOME; root's tools must not write root-owned files there.
export HOME=/root
umask 022
cd /

# One trust store for every client: pip, uv, requests, curl and git all read the system bundle
# (uv reads SSL_CERT_FILE instead of its built-in roots)
# (which holds extra-ca.pem once 10-base has run update-ca-certificates).
export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
export REQUESTS_CA_BUNDLE=$SSL_CERT_FILE PIP_CERT=$SSL_CERT_FILE CURL_CA_BUNDLE=$SSL_CERT_FILE
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
export UV_CACHE_DIR=/var/cache/imagefactory/uv
export UV_PYTHON_INSTALL_DIR=$IF_PREFIX/python
export UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_NO_PROGRESS=1
export MAMBA_ROOT_PREFIX=$IF_PREFIX/mamba
export PATH=$IF_TOOLS/bin:$IF_PREFIX/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

if_log() {
    printf '==> [%s] %s\n' "$IF_STAGE" "$*"
}

if_die() {
    printf '==> [%s] ERROR: %s\n' "$IF_STAGE" "$*" >&2
    exit 1
}

# if_get KEY: print one scalar from the config (dotted path; null prints nothing, booleans true/false).
if_get() {
    python3 "$IF_DIR/files/if_config.py" get "$IF_CONFIG" "$1"
}

# if_list KEY: print a list from the config, each item NUL-terminated (use with mapfile -d '').
if_list() {
    python3 "$IF_DIR/files/if_config.py" list "$IF_CONFIG" "$1"
}

if_user() {
    if_get login_user
}

# if_home USER: the user's home directory from the passwd database.
if_home() {
    getent passwd "$1" | cut -d: -f6
}

if_repo_dir() {
    local user
    user=$(if_user)
    printf '%s/%s\n' "$(if_home "$user")" "$(if_get source.dirname)"
}

# if_as_user CMD...: run CMD as the login user with a clean login-like environment and the given PATH.
if_as_user() {
    local user home
    user=$(if_user)
    home=$(if_home "$user")
    sudo -H -u "$user" -- env "HOME=$home" "USER=$user" "LOGNAME=$user" \
        "PATH=$IF_KERNEL/bin:$IF_SERVER/bin:/usr/local/bin:/usr/bin:/bin" \
        "SSL_CERT_FILE=$SSL_CERT_FILE" "REQUESTS_CA_BUNDLE=$REQUESTS_CA_BUNDLE" \
        "PIP_CERT=$PIP_CERT" "$@"
}

# if_checkout DEST: the repo at the recorded commit in DEST (which must not exist), from repo.tar.
# archive "git": repo.tar holds a bare clone (repo.git/); DEST becomes a clone of it at the commit.
# archive "files": repo.tar holds the plain directory's files; DEST gets them, no git.
if_checkout() {
    local dest=$1 archive commit
    archive=$(if_get source.archive)
    commit=$(if_get source.commit)
    case $archive in
    git)
        if [[ ! -d $IF_DIR/repo.git ]]; then
            tar -xf "$IF_DIR/repo.tar" -C "$IF_DIR"
        fi
        git -c safe.directory='*' clone --quiet --no-checkout -- "$IF_DIR/repo.git" "$dest"
        git -c safe.directory='*' -C "$dest" checkout --quiet --detach "$commit"
        ;;
    files)
        mkdir -p "$dest"
        tar -xf "$IF_DIR/repo.tar" -C "$dest" --no-same-owner
        ;;
    *)
        if_die "unknown source.archive '$archive' in $IF_CONFIG"
        ;;
    esac
}

# if_repo_file REPO PATH: print REPO/PATH after checking it is a file inside REPO (no ../ escapes).
if_repo_file() {
    local repo=$1 rel=$2 full
    full=$(realpath -e -- "$repo/$rel") || if_die "the recipe names '$rel' but the repo has no such file"
    case $full in
    "$(realpath -e -- "$repo")"/*) ;;
    *) if_die "the recipe names '$rel', which lies outside the repo" ;;
    esac
    [[ -f $full ]] || if_die "the recipe names '$rel' but it is not a file"
    printf '%s\n' "$full"
}

# if_enable UNIT...: enable units; works offline (chroot, no running init).
if_enable() {
    systemctl enable "$@"
}
