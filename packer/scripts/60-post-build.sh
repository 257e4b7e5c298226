#!/usr/bin/env bash
# 60-post-build: the recipe's post-build scripts that have run: true, in order, as the login user, in
# the repo, with the kernel env first on PATH. Shell scripts run under `bash -euo pipefail`; a script
# whose #! names another interpreter is executed directly. Any failure fails the bake.
set -euo pipefail
IF_STAGE=60-post-build
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${IF_DIR:?IF_DIR is not set}/scripts/lib.sh"

repo=$(if_repo_dir)
mapfile -d '' -t scripts < <(if_list post_build)
if ((${#scripts[@]} == 0)); then
    if_log "no post-build scripts to run"
    exit 0
fi
shell_re='^#!.*(/|[[:space:]])(ba)?sh([[:space:]]|$)'
for rel in "${scripts[@]}"; do
    path=$(if_repo_file "$repo" "$rel")
    first=$(head -n 1 -- "$path")
    if_log "running $rel"
    if [[ $first == '#!'* && ! $first =~ $shell_re ]]; then
        chmod u+x -- "$path"
        (cd "$repo" && if_as_user "$path") || if_die "post-build script $rel failed"
    else
        (cd "$repo" && if_as_user bash -euo pipefail "$path") || if_die "post-build script $rel failed"
    fi
done
if_log "done"
