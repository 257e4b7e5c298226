#!/usr/bin/env bash
# 55-data: the recipe's `data` entries (downloads checked by sha256, git repositories at a commit) into
# the repository or /data/, owned by the login user, before post-build scripts run (if_data.py). A
# failed download or a checksum mismatch fails the bake, naming the entry.
set -euo pipefail
IF_STAGE=55-data
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${IF_DIR:?IF_DIR is not set}/scripts/lib.sh"

results=$IF_DIR/results
install -d -m 0755 "$results"
python3 "$IF_DIR/files/if_data.py" "$IF_CONFIG" "$(if_repo_dir)" "$(if_user)" "$results/data.json" ||
    if_die "the recipe's data could not be put into the image (see above)"
if_log "done"
