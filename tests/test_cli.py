"""The command line's shape and edge, through real subprocesses of both programs: the stock `invoke`
(loading the root tasks.py) and the `imagefactory` console script.

Help for a task in every spelling, FactoryErrors as one line with exit code 1, option values checked
in one line naming the option and its range, and modules that import on their own and stay light.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, cli_env, run_cli
from invoke import Context, Exit

from imagefactory.cli.edge import task
from imagefactory.errors import PackerError
from imagefactory.home import Home

CLI_MODULES = ("common", "edge", "parsing", "program", "bake", "recipe", "catalog", "instances", "sandbox", "home")
HEAVY = ("boto3", "botocore", "moto", "git", "jinja2", "ruamel", "requests")
CONSOLE = [sys.executable, "-c", "from imagefactory.main import program; program.run()"]
INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(REPO_ROOT)]


def bare_env(tmp: Path) -> dict[str, str]:
    """No factory home, no AWS credentials, HOME in a temp folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMAGEFACTORY_"))}
    return env | {"HOME": str(tmp)}


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.mark.parametrize("module", CLI_MODULES)
def test_every_cli_module_imports_on_its_own(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import imagefactory.cli.{module}"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_the_collection_imports_nothing_heavy() -> None:
    """What keeps `invoke --list` fast: boto3, moto, git, jinja2, ruamel load only inside task bodies."""
    code = f"import sys, tasks; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def help_of(program: list[str], args: list[str], cwd: Path) -> str:
    done = run([*program, *args], cwd, bare_env(cwd))
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", "asking for help runs nothing (no emulator, no error)"
    assert list(cwd.iterdir()) == [], "asking for help writes nothing"
    return done.stdout


@pytest.mark.parametrize(("program", "binary"), [(INVOKE, "inv"), (CONSOLE, "imagefactory")])
@pytest.mark.parametrize("args", [["bake", "--help"], ["bake", "-h"], ["--help", "bake"]])
def test_task_help_in_every_spelling(tmp_path: Path, program: list[str], binary: str, args: list[str]) -> None:
    out = help_of(program, args, tmp_path)
    usage = out.splitlines()[0]   # stock invoke's own `--help TASK` says "inv[oke]"
    assert usage.startswith(f"Usage: {binary}") and " [--core-opts] bake [--options]" in usage
    assert "Options:" in out and "Sandbox only:" in out and "--[no-]resolve" in out


@pytest.mark.parametrize(("command", "option_help"), [
    ("launch", "Root volume size in GB"), ("catalog.show", "Image name"), ("recipe.check", "Recipe name"),
    ("terminate", "Do not ask for confirmation"), ("init", "Folder to make"), ("sandbox.down", "remove crashed builds"),
])
def test_every_task_with_a_positional_value_shows_help(tmp_path: Path, command: str, option_help: str) -> None:
    out = help_of(CONSOLE, [command, "--help"], tmp_path)
    assert out.startswith(f"Usage: imagefactory [--core-opts] {command} [--options]") and option_help in out


def test_the_default_task_of_a_group_shows_its_help(tmp_path: Path) -> None:
    done = run([*INVOKE, "recipe", "--help"], tmp_path, bare_env(tmp_path))
    assert done.returncode == 0 and "Derive recipes/NAME.yaml" in done.stdout and "--force" in done.stdout


@pytest.mark.parametrize("program", [INVOKE, CONSOLE])
def test_a_factory_error_is_one_line_and_exit_code_1(home: Home, program: list[str]) -> None:
    line = one_error_line(run([*program, "catalog.show", "nope"], REPO_ROOT, cli_env(home)))
    assert line == "error: no image named 'nope' in the catalog (known images: none yet)"


@pytest.mark.parametrize(("args", "message"), [
    (["launch", "img", "--volume", "abc"],
     "error: --volume 'abc' is not a whole number (give 1 to 16384 GB, or leave it out for the image's size)"),
    (["launch", "img", "--volume", "0"],
     "error: --volume 0 is out of range (give 1 to 16384 GB, or leave it out for the image's size)"),
    (["launch", "img", "--volume", "16385"],
     "error: --volume 16385 is out of range (give 1 to 16384 GB, or leave it out for the image's size)"),
    (["launch", "img", "--autostop", "abc"], "error: --autostop 'abc' is not a whole number (give 0 to 10080 minutes)"),
    (["launch", "img", "--autostop", "-1"], "error: --autostop -1 is out of range (give 0 to 10080 minutes)"),
    (["launch", "img", "--autostop", "10081"], "error: --autostop 10081 is out of range (give 0 to 10080 minutes)"),
    (["launch", "img", "--local-port", "abc"], "error: --local-port 'abc' is not a whole number (give 1024 to 65535)"),
    (["connect", "i-0123", "--local-port", "80"], "error: --local-port 80 is out of range (give 1024 to 65535)"),
    (["connect", "i-0123", "--local-port", "65536"], "error: --local-port 65536 is out of range (give 1024 to 65535)"),
])
def test_integer_options_are_checked_in_one_line(home: Home, args: list[str], message: str) -> None:
    done = run_cli(home, *args)
    assert one_error_line(done) == message
    assert "SANDBOX" not in done.stdout + done.stderr, "a bad option stops the command before anything starts"
    assert not home.sandbox_dir.exists()


def test_terminate_without_a_terminal_asks_for_yes(home: Home) -> None:
    done = run([*CONSOLE, "terminate", "i-0123"], home.root, cli_env(home))
    assert one_error_line(done) == "error: not terminating i-0123: there is no terminal to confirm on (pass --yes)"
    assert not home.sandbox_dir.exists()


def test_results_render_as_text_or_json(home: Home) -> None:
    assert run_cli(home, "catalog", check=True).stdout.startswith("the catalog is empty")
    assert json.loads(run_cli(home, "catalog", "--json", check=True).stdout) == []
    status = run_cli(home, "sandbox.status", "--json", check=True)
    assert json.loads(status.stdout) == {"running": False} and status.stderr == ""


def test_every_task_and_every_option_has_help() -> None:
    from imagefactory.cli import ns

    for name in ns.task_names:
        command = ns[name]
        assert (command.__doc__ or "").strip(), f"{name} has no docstring"
        for arg in command.get_arguments():
            assert arg.help, f"{name} --{arg.name} has no help"


def test_the_edge_puts_an_error_quoting_a_tool_on_one_line() -> None:
    @task
    def broken(c: Context) -> None:
        """Fails like a packer validate whose output is quoted."""
        raise PackerError("packer validate failed in /b:\nError: one\n\n  on source.pkr.hcl line 3:\n", "see the log")

    with pytest.raises(Exit) as caught:
        broken(Context())
    one_line = "error: packer validate failed in /b: Error: one on source.pkr.hcl line 3: (see the log)"
    assert caught.value.message == one_line
    assert caught.value.code == 1
