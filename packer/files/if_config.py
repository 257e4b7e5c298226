"""Read one value from the provisioning config (config.json) for the shell stages.

    python3 if_config.py get CONFIG KEY    print a scalar: null -> nothing, booleans -> true/false
    python3 if_config.py list CONFIG KEY   print a list, each item NUL-terminated

KEY is a dotted path such as `source.commit`. Values are printed verbatim and never evaluated, so a
value holding quotes, `$(`, backticks or newlines reaches the caller as data. Runs on the image's
system python3 (3.10 or newer).
"""

import json
import sys


def lookup(config: dict, key: str) -> object:
    value: object = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise SystemExit(f"if_config: no key '{key}' in the provisioning config")
        value = value[part]
    return value


def scalar(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise SystemExit("if_config: asked for a scalar but the value is a list or mapping")
    return str(value)


def main(argv: list) -> int:
    if len(argv) != 4 or argv[1] not in ("get", "list"):
        raise SystemExit("usage: if_config.py get|list CONFIG KEY")
    with open(argv[2], encoding="utf-8") as fh:
        value = lookup(json.load(fh), argv[3])
    if argv[1] == "get":
        sys.stdout.write(scalar(value))
        return 0
    if not isinstance(value, list):
        raise SystemExit(f"if_config: '{argv[3]}' is not a list")
    for item in value:
        sys.stdout.write(scalar(item) + "\0")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
