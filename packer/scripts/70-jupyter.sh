#!/usr/bin/env bash
# 70-jupyter: the JupyterLab systemd service (loopback, recipe port, login user, server env), its
# per-instance token maker, the first-boot unit and, when autostop_minutes is set, the idle auto-stop
# timer. Units are enabled offline; nothing is started here.
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
for unit in imagefactory-jupyter.service imagefactory-firstboot.service; do
    install -m 0644 "$files/$unit" "$units/$unit"
done

python3 "$files/if_render.py" env "$IF_CONFIG" "$home" "$repo" >"$IF_STATE/jupyter.env"
python3 "$files/if_render.py" dropin "$IF_CONFIG" "$home" "$repo" \
    >"$units/imagefactory-jupyter.service.d/10-user.conf"
install -d -m 0755 "$IF_SERVER/etc/jupyter"
python3 "$files/if_render.py" server-config "$IF_CONFIG" >"$IF_SERVER/etc/jupyter/jupyter_server_config.json"
python3 "$files/if_render.py" jupyter-config "$IF_CONFIG" >"$IF_SERVER/etc/jupyter/jupyter_config.json"
chmod 0644 "$IF_STATE/jupyter.env" "$units/imagefactory-jupyter.service.d/10-user.conf"
install -d -m 0700 -o "$user" -g "$(id -gn "$user")" "$home/.jupyter"

enabled=(imagefactory-firstboot.service imagefactory-jupyter.service)
if [[ -n $(if_get autostop_minutes) ]]; then
    if_log "idle auto-stop after $(if_get autostop_minutes) minutes"
    install -m 0644 "$files/imagefactory-idle.service" "$units/imagefactory-idle.service"
    install -m 0644 "$files/imagefactory-idle.timer" "$units/imagefactory-idle.timer"
    enabled+=(imagefactory-idle.timer)
else
    if_log "no idle auto-stop"
    rm -f "$units/imagefactory-idle.service" "$units/imagefactory-idle.timer"
fi
if_enable "${enabled[@]}"
if_log "enabled: ${enabled[*]} (JupyterLab on 127.0.0.1:$(if_get jupyter.port) as $user)"
