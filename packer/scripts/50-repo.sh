#!/usr/bin/env bash
# 50-repo: the repo at the recorded commit in the login user's home, `origin` set to the recipe's repo
# URL, owned by the login user; then, if install_repo, the repo installed editable into the kernel env.
set -euo pipefail
IF_STAGE=50-repo
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${IF_DIR:?IF_DIR is not set}/scripts/lib.sh"

user=$(if_user)
dest=$(if_repo_dir)
commit=$(if_get source.commit)
ref=$(if_get source.ref)
url=$(if_get source.repo)

if_log "checking out $commit into $dest"
rm -rf "$dest"
if_checkout "$dest"
if [[ $(if_get source.archive) == git ]]; then
    git -C "$dest" config remote.origin.url "$url"
    # A named ref becomes a local branch at the commit; a SHA or no ref leaves HEAD detached.
    if [[ -n $ref && ! $ref =~ ^[0-9a-f]{7,40}$ ]] && git check-ref-format --branch "$ref" >/dev/null 2>&1; then
        git -C "$dest" checkout --quiet -B "$ref" "$commit"
    fi
    [[ $(git -C "$dest" rev-parse HEAD) == "$commit" ]] || if_die "HEAD is not the recorded commit $commit"
fi
chown -R "$user:" "$dest"

if [[ $(if_get install_repo) == true ]]; then
    if_log "installing the repo (editable) into the kernel env"
    (cd "$dest" && if_as_user uv pip install --python "$IF_KERNEL/bin/python" -e "$dest") || {
        if_log "uv could not install the repo (its error is above); trying pip"
        (cd "$dest" && if_as_user "$IF_KERNEL/bin/python" -m pip install --no-cache-dir -e "$dest") ||
            if_die "the repo could not be installed as a package (see above)"
    }
fi
if_log "done"
