#!/usr/bin/env bash
# 40-kernel-env: the kernel env ($IF_KERNEL) with the recipe's Python and packages plus ipykernel,
# registered as a named kernel in the server env. Order: conda files (micromamba), pip requirement
# files and the Pipfile (uv, pip as a fallback) resolved together with ipykernel. The repo itself is
# installed (editable) by 50-repo, once it is cloned into the login user's home.
set -euo pipefail
IF_STAGE=40-kernel-env
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${IF_DIR:?IF_DIR is not set}/scripts/lib.sh"

UV_PYTHON_DOWNLOADS=$(if_get python.downloads)
export UV_PYTHON_DOWNLOADS
python_version=$(if_get python.version)
kernel_name=$(if_get kernel.name)
kernel_display=$(if_get kernel.display_name)
pipfile=$(if_get pipfile)
mapfile -d '' -t conda_files < <(if_list conda)
mapfile -d '' -t pip_files < <(if_list pip)
mapfile -d '' -t extra_pkgs < <(if_list packages) # the recipe's environment.packages, resolved with the files

src=$IF_DIR/src
rm -rf "$src"
if_checkout "$src"

# install_pip ARGS...: uv first; if uv refuses, pip gets a go so its message is there too.
install_pip() {
    if (cd "$src" && uv pip install --python "$IF_KERNEL/bin/python" "$@"); then
        return 0
    fi
    if_log "uv could not install the requirements (its error is above); trying pip"
    (cd "$src" && "$IF_KERNEL/bin/python" -m pip install --no-cache-dir "$@") ||
        if_die "the kernel env's packages could not be installed (see the installer output above)"
}

rm -rf "$IF_KERNEL"
if ((${#conda_files[@]} > 0)); then
    env_args=()
    for f in "${conda_files[@]}"; do
        env_args+=(-f "$(if_repo_file "$src" "$f")")
    done
    if_log "creating the kernel env from ${conda_files[*]} with micromamba"
    micromamba create --yes --quiet -p "$IF_KERNEL" -c conda-forge "${env_args[@]}"
    if [[ ! -x $IF_KERNEL/bin/python ]]; then
        micromamba install --yes --quiet -p "$IF_KERNEL" -c conda-forge "python=$python_version"
    fi
    micromamba install --yes --quiet -p "$IF_KERNEL" -c conda-forge ipykernel pip
    kernel_pkgs=()
else
    if_log "creating the kernel env with Python $python_version (downloads: $UV_PYTHON_DOWNLOADS)"
    uv venv --quiet --seed --python "$python_version" "$IF_KERNEL"
    kernel_pkgs=(ipykernel)
fi

req_args=()
for f in "${pip_files[@]}"; do
    req_args+=(-r "$(if_repo_file "$src" "$f")")
done
if [[ -n $pipfile ]]; then
    if_log "converting $pipfile to requirements"
    "$IF_TOOLS/bin/python" "$IF_DIR/files/if_pipfile.py" "$(if_repo_file "$src" "$pipfile")" \
        >"$IF_DIR/pipfile-requirements.txt"
    req_args+=(-r "$IF_DIR/pipfile-requirements.txt")
fi
if ((${#req_args[@]} + ${#kernel_pkgs[@]} + ${#extra_pkgs[@]} > 0)); then
    if_log "installing ${pip_files[*]} ${pipfile} ${extra_pkgs[*]} ${kernel_pkgs[*]}"
    install_pip "${req_args[@]}" "${extra_pkgs[@]}" "${kernel_pkgs[@]}"
fi

if_log "registering kernel '$kernel_name' in the server env"
spec_tmp=$(mktemp -d) # ipykernel leaves its temporary folder behind; keep it out of /tmp
TMPDIR=$spec_tmp "$IF_KERNEL/bin/python" -m ipykernel install --prefix "$IF_SERVER" --name "$kernel_name" \
    --display-name "$kernel_display"
rm -rf "$spec_tmp"
chown -R "$(if_user):" "$IF_KERNEL"
if_log "kernel python: $("$IF_KERNEL/bin/python" --version 2>&1)"
