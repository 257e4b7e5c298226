#!/usr/bin/env bash
# 80-smoke: fail the bake unless the kernel env imports the recipe's top-level packages (and the code's
# imports, as the recipe's smoke.fail_on_import says), the system programs and libraries exist, the server
# env's `jupyter kernelspec list` shows the kernel, and JupyterLab starts, answers /api/status with a
# token, offers the recipe's kernel but not its own Python, carries the settings overrides and starts
# the kernel and runs code in it (if_smoke_server.py, as the login user on a free loopback port; every
# wait there is bounded, with progress, so a slow machine is told apart from a broken image), and the
# notebooks marked run: true run without error. Results go to $IF_DIR/results/ for 85-manifest.
set -euo pipefail
IF_STAGE=80-smoke
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${IF_DIR:?IF_DIR is not set}/scripts/lib.sh"

repo=$(if_repo_dir)
kernel_name=$(if_get kernel.name)

results=$IF_DIR/results # what 85-manifest puts into the manifest
install -d -m 0755 "$results"
install -m 0644 -o "$(if_user)" /dev/null "$results/imports.json"
install -m 0644 -o "$(if_user)" /dev/null "$results/notebooks.json"

if_log "kernel env imports (the recipe's packages, then the code's imports)"
(cd "$repo" && if_as_user "$IF_KERNEL/bin/python" "$IF_DIR/files/if_smoke_imports.py" "$IF_CONFIG" "$repo" \
    "$results/imports.json") ||
    if_die "the kernel env cannot import the recipe's packages or the code's imports (see above)"

if_log "system programs and libraries"
python3 "$IF_DIR/files/if_smoke_system.py" "$IF_CONFIG" "$results/system.json" ||
    if_die "programs or libraries the recipe's system packages are for are missing (see above)"

if_log "jupyter kernelspec list (server env)"
specs=$(if_as_user "$IF_SERVER/bin/jupyter" kernelspec list)
printf '%s\n' "$specs"
awk -v name="$kernel_name" '$1 == name { found = 1 } END { exit !found }' <<<"$specs" ||
    if_die "kernel '$kernel_name' is not listed by the server env"

if_log "JupyterLab starts and answers"
(cd "$repo" && if_as_user "$IF_SERVER/bin/python" "$IF_DIR/files/if_smoke_server.py" "$kernel_name" "$IF_KERNEL") ||
    if_die "JupyterLab smoke test failed (see above)"
if_log "notebooks (run: true)"
(cd "$repo" && if_as_user "$IF_SERVER/bin/python" "$IF_DIR/files/if_run_notebooks.py" "$IF_CONFIG" "$repo" \
    "$kernel_name" "$results/notebooks.json") ||
    if_die "a notebook failed: $("$IF_SERVER/bin/python" "$IF_DIR/files/if_run_notebooks.py" --failed "$results/notebooks.json")"
if_log "smoke test passed"
