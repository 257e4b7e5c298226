"""An image's systemd units as a sandbox instance reads them: drop-ins win, and nothing outside the image
(a `..` path or a symlink planted by a repository's postBuild) is ever read from the host."""

from __future__ import annotations

from pathlib import Path

from imagefactory.sandbox.units import expand, image_file, read_env_file, read_unit

UNIT = """[Service]
EnvironmentFile=/etc/imagefactory/jupyter.env
EnvironmentFile=-/../../../../../../etc/hostname
ExecStartPre=/opt/imagefactory/bin/imagefactory-token
ExecStart=/opt/imagefactory/server/bin/jupyter lab --port=${IF_JUPYTER_PORT} --ip=127.0.0.1
User=root
"""


def test_units_drop_ins_and_expansion(tmp_path: Path) -> None:
    units = tmp_path / "etc/systemd/system"
    (units / "lab.service.d").mkdir(parents=True)
    (units / "lab.service").write_text(UNIT)
    (units / "lab.service.d/10-user.conf").write_text("[Service]\nUser=ubuntu\nWorkingDirectory=/home/ubuntu\n")
    (tmp_path / "etc/imagefactory").mkdir()
    (tmp_path / "etc/imagefactory/jupyter.env").write_text('IF_JUPYTER_PORT=8889\nJUPYTER_TOKEN_FILE="/t"\n')
    unit = read_unit(tmp_path, "lab.service")
    assert unit is not None and unit.user == "ubuntu" and unit.workdir == "/home/ubuntu"
    assert unit.exec_start_pre == (("/opt/imagefactory/bin/imagefactory-token",),)
    env = {k: v for f in unit.env_files for k, v in read_env_file(tmp_path, f).items()}
    assert env == {"IF_JUPYTER_PORT": "8889", "JUPYTER_TOKEN_FILE": "/t"}, "the ../ file is not read from the host"
    assert expand(unit.exec_start, env)[2] == "--port=8889"


def test_nothing_outside_the_image_is_read(tmp_path: Path) -> None:
    host_secret = tmp_path / "host-secret"
    host_secret.write_text("[Service]\nExecStart=/bin/true\n")
    image = tmp_path / "image"
    units = image / "etc/systemd/system"
    units.mkdir(parents=True)
    (units / "evil.service").symlink_to(host_secret)
    (units / "abs.service").symlink_to("/etc/hostname")
    assert read_unit(image, "evil.service") is None
    assert read_unit(image, "abs.service") is None
    assert image_file(image, "../host-secret") is None
    assert image_file(image, "etc/systemd/system") == (image / "etc/systemd/system").resolve()
