#!/usr/bin/env bash
# 80-smoke: fail the bake unless the kernel env imports the recipe's top-level packages (and the code's
# imports, as the recipe's smoke.fail_on_import says), the system programs and libraries exist, the server
# env's `jupyter kernelspec list` shows the kernel, and JupyterLab starts, answers /api/status with a
# token, offers the recipe's kernel but not its own Python, carries the settings overrides and starts
# the kernel and runs code in it (if_smoke_server.py, as the login user on a free loopback port; every
# wait there is bounded, with progress, so a slow machine is told apart from a broken image), and the
# notebooks marked run: true run without error. JupyterLab takes seconds to start, so if_smoke_server.py
# starts first, in the background (its output is kept and shown after the checks that run meanwhile);
# the reasons are given in the order above. Results go to $IF_DIR/results/ for 85-manifest.
set -euo pipefail
IF_STAGE=80-smoke
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${IF_DIR:?IF_DIR is not set}/scripts/lib.sh"

repo=$(if_repo_dir)
kernel_name=$(if_get kernel.name)
user=$(if_user)

results=$IF_DIR/results # what 85-manifest puts into the manifest
install -d -m 0755 "$results"
install -m 0644 -o "$user" /dev/null "$results/imports.json"
install -m 0644 -o "$user" /dev/null "$results/notebooks.json"
server_out=$results/smoke-server.log
server_pidfile=$results/smoke-server.pid
install -m 0644 -o "$user" /dev/null "$server_pidfile"
cd "$repo" # JupyterLab's root folder, where the kernel and the notebooks start

# if a check fails while the server check runs, the server check is stopped (SIGTERM: it stops JupyterLab
# and the kernel; it writes its pid once started) and waited for before the stage ends
server=""
stop_server() {
    if [[ -n $server ]]; then
        if kill -0 "$server" 2>/dev/null && [[ -s $server_pidfile ]]; then
            kill -TERM "$(<"$server_pidfile")" 2>/dev/null || true
        fi
        wait "$server" || true
        if_log "JupyterLab and the kernel stopped (a check failed, see above)"
    fi
}
trap stop_server EXIT

if_log "JupyterLab and the kernel start (in the background, while the checks below run)"
if_as_user "$IF_SERVER/bin/python" -u "$IF_DIR/files/if_smoke_server.py" "$kernel_name" "$IF_KERNEL" \
    "$server_pidfile" >"$server_out" 2>&1 &
server=$!

if_log "kernel env imports (the recipe's packages, then the code's imports)"
if_as_user "$IF_KERNEL/bin/python" "$IF_DIR/files/if_smoke_imports.py" "$IF_CONFIG" "$repo" "$results/imports.json" ||
    if_die "the kernel env cannot import the recipe's packages or the code's imports (see above)"

if_log "system programs and libraries"
python3 "$IF_DIR/files/if_smoke_system.py" "$IF_CONFIG" "$results/system.json" ||
    if_die "programs or libraries the recipe's system packages are for are missing (see above)"

if_log "jupyter kernelspec list (server env), JupyterLab starts and answers, the kernel runs code"
tail -n +1 -s 0.05 -f --pid="$server" "$server_out"
status=0
wait "$server" || status=$?
server=""
case $status in
0) ;;
3) if_die "kernel '$kernel_name' is not listed by the server env" ;; # if_smoke_server.py's NOT_LISTED
*) if_die "JupyterLab smoke test failed (see above)" ;;
esac

if_log "notebooks (run: true)"
if_as_user "$IF_SERVER/bin/python" "$IF_DIR/files/if_run_notebooks.py" "$IF_CONFIG" "$repo" "$kernel_name" \
    "$results/notebooks.json" ||
    if_die "a notebook failed: $("$IF_SERVER/bin/python" "$IF_DIR/files/if_run_notebooks.py" --failed "$results/notebooks.json")"
if_log "smoke test passed"
