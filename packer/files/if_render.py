"""Render the JupyterLab service settings from the provisioning config.

    python3 if_render.py env CONFIG HOME REPO_DIR      -> /etc/imagefactory/jupyter.env
    python3 if_render.py dropin CONFIG HOME REPO_DIR   -> imagefactory-jupyter.service.d/10-user.conf
    python3 if_render.py server-config CONFIG          -> $IF_SERVER/etc/jupyter/jupyter_server_config.json
    python3 if_render.py jupyter-config CONFIG         -> $IF_SERVER/etc/jupyter/jupyter_config.json

Every value that lands in a systemd file is checked against a strict pattern first, so nothing from the
config can add a line or a directive. Runs on the image's system python3 (3.10 or newer).
"""

import json
import re
import sys

SAFE_PATH = re.compile(r"/[A-Za-z0-9._/-]*")
SAFE_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
SAFE_RELATIVE = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def checked(value: object, pattern: "re.Pattern[str]", what: str) -> str:
    text = str(value)
    if not pattern.fullmatch(text):
        raise SystemExit(f"if_render: refusing unsafe {what} {text!r}")
    return text


def env_file(config: dict, home: str, repo_dir: str) -> str:
    home = checked(home, SAFE_PATH, "home directory")
    values = {
        "IF_JUPYTER_PORT": str(int(config["jupyter"]["port"])),
        "IF_REPO_DIR": checked(repo_dir, SAFE_PATH, "repo directory"),
        "JUPYTER_TOKEN_FILE": f"{home}/{token_file(config)}",
        "SSL_CERT_FILE": CA_BUNDLE,
        "REQUESTS_CA_BUNDLE": CA_BUNDLE,
        "PIP_CERT": CA_BUNDLE,
    }
    minutes = config.get("autostop_minutes")
    if minutes is not None:
        values["IF_IDLE_MINUTES"] = str(int(minutes))
    return "".join(f"{key}={value}\n" for key, value in values.items())


def token_file(config: dict) -> str:
    """The token file's path relative to the login user's home (config jupyter.token_file)."""
    rel = checked(config["jupyter"]["token_file"], SAFE_RELATIVE, "token file")
    if ".." in rel.split("/"):
        raise SystemExit(f"if_render: refusing unsafe token file {rel!r}")
    return rel


def dropin(config: dict, home: str, repo_dir: str) -> str:
    user = checked(config["login_user"], SAFE_USER, "login user")
    checked(home, SAFE_PATH, "home directory")
    repo_dir = checked(repo_dir, SAFE_PATH, "repo directory")
    return f"[Service]\nUser={user}\nWorkingDirectory={repo_dir}\n"


def server_config(config: dict) -> str:
    """JupyterLab: loopback only, the recipe's kernel by default."""
    settings = {
        "ServerApp": {"ip": "127.0.0.1", "open_browser": False},
        "MappingKernelManager": {"default_kernel_name": config["kernel"]["name"]},
    }
    return json.dumps(settings, indent=2) + "\n"


def jupyter_config(config: dict) -> str:
    """Every Jupyter app of the server env: no kernel for the server env's own Python."""
    return json.dumps({"KernelSpecManager": {"ensure_native_kernel": False}}, indent=2) + "\n"


def main(argv: list) -> int:
    if len(argv) < 3 or argv[1] not in ("env", "dropin", "server-config", "jupyter-config"):
        raise SystemExit("usage: if_render.py env|dropin CONFIG HOME REPO_DIR | server-config|jupyter-config CONFIG")
    with open(argv[2], encoding="utf-8") as fh:
        config = json.load(fh)
    if argv[1] == "server-config":
        sys.stdout.write(server_config(config))
    elif argv[1] == "jupyter-config":
        sys.stdout.write(jupyter_config(config))
    elif len(argv) != 5:
        raise SystemExit(f"usage: if_render.py {argv[1]} CONFIG HOME REPO_DIR")
    elif argv[1] == "env":
        sys.stdout.write(env_file(config, argv[3], argv[4]))
    else:
        sys.stdout.write(dropin(config, argv[3], argv[4]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
