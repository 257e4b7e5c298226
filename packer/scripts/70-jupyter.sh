#!/usr/bin/env bash
# 70-jupyter: the JupyterLab systemd service (loopback, recipe port, login user, server env), its
# per-instance token maker, the first-boot unit, the server env's Jupyter settings (only the recipe's
# kernel, no Jupyter news prompt) and the idle auto-stop timer. The timer is always enabled: its check
# reads /etc/imagefactory/autostop-minutes (written at launch) or else the baked autostop_minutes, and
# does nothing when neither is set. Units are enabled offline; nothing is started here.
set -euo pipefail
IF_STAGE=70-jupyter
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${IF_DIR:?IF_DIR is not set}/scripts/lib.sh"

files=$IF_DIR/files
units=/etc/systemd/system
user=$(if_user)
home=$(if_home "$user")
repo=$(if_repo_dir)

install -d -m 0755 "$IF_PREFIX/bin" "$IF_STATE" "$units/imagefactory-jupyter.service.d"
install -m 0755 "$files/imagefactory-token.sh" "$IF_PREFIX/bin/imagefactory-token"
install -m 0755 "$files/imagefactory-firstboot.sh" "$IF_PREFIX/bin/imagefactory-firstboot"
install -m 0644 "$files/if_idle_check.py" "$IF_PREFIX/bin/if_idle_check.py"
for unit in imagefactory-jupyter.service imagefactory-firstboot.service imagefactory-idle.service \
    imagefactory-idle.timer; do
    install -m 0644 "$files/$unit" "$units/$unit"
done

python3 "$files/if_render.py" env "$IF_CONFIG" "$home" "$repo" >"$IF_STATE/jupyter.env"
python3 "$files/if_render.py" dropin "$IF_CONFIG" "$home" "$repo" \
    >"$units/imagefactory-jupyter.service.d/10-user.conf"
install -d -m 0755 "$IF_SERVER/etc/jupyter"
python3 "$files/if_render.py" server-config "$IF_CONFIG" >"$IF_SERVER/etc/jupyter/jupyter_server_config.json"
python3 "$files/if_render.py" jupyter-config "$IF_CONFIG" >"$IF_SERVER/etc/jupyter/jupyter_config.json"
install -D -m 0644 "$files/jupyterlab-overrides.json" "$IF_SERVER/share/jupyter/lab/settings/overrides.json"
chmod 0644 "$IF_STATE/jupyter.env" "$units/imagefactory-jupyter.service.d/10-user.conf"
install -d -m 0700 -o "$user" -g "$(id -gn "$user")" "$home/.jupyter"

enabled=(imagefactory-firstboot.service imagefactory-jupyter.service imagefactory-idle.timer)
minutes=$(if_get autostop_minutes)
baked=off
if [[ -n $minutes ]]; then
    baked="after $minutes idle minutes"
fi
if_log "idle auto-stop: $baked as baked; /etc/imagefactory/autostop-minutes, written at launch, wins"
if_enable "${enabled[@]}"
if_log "enabled: ${enabled[*]} (JupyterLab on 127.0.0.1:$(if_get jupyter.port) as $user)"
