"""The command line: thin invoke tasks that parse arguments, call one library function and render its
result as text or JSON. `FactoryError` becomes a one-line error and exit code 1 (`boundary`).

Heavy modules (boto3, moto, git, jinja2) are imported inside the tasks so `invoke --list` stays fast.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from invoke import Collection, Exit, task

F = TypeVar("F", bound=Callable[..., Any])


def boundary(fn: F) -> F:
    """Turn a FactoryError into `error: ...` on one line and exit code 1; Ctrl-C into exit code 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from imagefactory.errors import BakeInterrupted, FactoryError

        if any(v in ("--help", "-h") for v in (*args[1:], *kwargs.values()) if isinstance(v, str)):
            return _show_help(fn)  # `invoke bake --help`: invoke parsed --help as the positional value
        try:
            return fn(*args, **kwargs)
        except BakeInterrupted as exc:
            raise Exit(f"error: {exc}", code=130) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None
        except FactoryError as exc:
            raise Exit(f"error: {exc}", code=1) from None

    return wrapper  # type: ignore[return-value]


def _show_help(fn: Callable[..., Any]) -> None:
    from invoke import Program

    names = [name for name, t in _all_tasks(ns) if getattr(t.body, "__wrapped__", t.body) is fn]
    Program(namespace=ns, binary="invoke").run(["invoke", "--help", names[0] if names else ""], exit=False)


def _all_tasks(col: Collection, prefix: str = "") -> list[tuple[str, Any]]:
    found = [(prefix + name, task) for name, task in col.tasks.items()]
    for name, sub in col.collections.items():
        found += _all_tasks(sub, f"{prefix}{name}.")
    return found


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def emit(data: Any, as_json: bool, text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str) if as_json else text, flush=True)


def _home() -> Any:
    from imagefactory.home import find_home

    return find_home()


def _csv(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


# ---- bake -----------------------------------------------------------------------------------------

@task(help={
    "repo": "Repository: a local folder, a git URL (file://, https://, ssh), owner/name on GitHub, or a catalog image",
    "ref": "Branch, tag or commit to build (default: the default branch)",
    "name": "Image name (default: from the repo's name)",
    "regions": "Comma-separated AWS regions, the first is where it builds (default: the recipe's)",
    "sandbox": "Use the local EC2 emulator even if AWS credentials are configured",
    "python": "Override the recipe's Python version for this bake (e.g. 3.11), recorded in the catalog",
    "resolve": "Resolve the recipe's pip packages with uv before building (default on; --no-resolve skips)",
    "api_only": "Sandbox only: register AMIs without provisioning anything (fast pipeline rehearsal)",
    "extra_ca": "PEM CA bundle to trust during provisioning (TLS-intercepting proxies); or IMAGEFACTORY_EXTRA_CA",
    "json": "Print the result as JSON on stdout",
})
@boundary
def bake(c: Any, repo: str, ref: str | None = None, name: str | None = None, regions: str | None = None,
         sandbox: bool = False, python: str | None = None, resolve: bool = True, api_only: bool = False,
         extra_ca: str | None = None, json: bool = False) -> None:
    """Bake a repo into AMIs: repo -> recipe -> Packer -> one AMI per region -> catalog."""
    from imagefactory.bake import BakeOptions
    from imagefactory.bake import bake as run_bake

    opts = BakeOptions(repo=repo, ref=ref, name=name, regions=_csv(regions), sandbox=sandbox, python=python,
                       resolve=resolve, api_only=api_only, extra_ca=extra_ca)
    result = run_bake(_home(), opts, say)
    emit(result.to_dict(), json, f"{result.image} {result.build_id}: " +
         ", ".join(f"{r}={a}" for r, a in sorted(result.amis.items())))


# ---- recipe ---------------------------------------------------------------------------------------

@task(name="derive", default=True, help={
    "repo": "Repository: a local folder, a git URL, owner/name on GitHub, or a catalog image",
    "ref": "Branch, tag or commit (default: the default branch)",
    "name": "Image/recipe name (default: from the repo's name)",
    "force": "Overwrite an existing recipe even if you edited it (default: show a diff, keep yours)",
    "json": "Print the derivation (recipe, used, ignored, Python and reason) as JSON",
})
@boundary
def recipe_derive(c: Any, repo: str, ref: str | None = None, name: str | None = None, force: bool = False,
                  json: bool = False) -> None:
    """Derive recipes/NAME.yaml from a repo and explain what was used, ignored and why."""
    from imagefactory.recipe_commands import derive_recipe

    outcome = derive_recipe(_home(), repo, ref=ref, name=name, force=force, progress=say)
    emit(outcome.to_dict(), json, outcome.text())


@task(help={
    "name": "Recipe name (recipes/NAME.yaml)",
    "resolve": "Also resolve the pip packages for the recipe's Python on linux x86_64 with uv",
    "json": "Print the result as JSON",
})
@boundary
def check(c: Any, name: str, resolve: bool = False, json: bool = False) -> None:
    """Validate recipes/NAME.yaml (file, field, fix); with --resolve, check its packages resolve."""
    from imagefactory.errors import ResolveError
    from imagefactory.recipe_commands import check as check_recipe

    outcome = check_recipe(_home(), name, resolve=resolve, progress=say)
    if not outcome.ok:
        raise ResolveError(f"{outcome.path}: {outcome.message}", "fix the pins or the Python version")
    emit(outcome.to_dict(), json, f"{outcome.path}: {outcome.message}")


# ---- catalog --------------------------------------------------------------------------------------

@task(name="list", default=True, help={"json": "Print JSON for scripts"})
@boundary
def catalog_list(c: Any, json: bool = False) -> None:
    """List images in the catalog (real and sandbox), with their latest build and AMIs."""
    from imagefactory.catalog_view import rows, table

    items = rows(_home())
    emit(items, json, table(items))


@task(help={"name": "Image name", "json": "Print JSON instead of YAML"})
@boundary
def show(c: Any, name: str, json: bool = False) -> None:
    """Show one image's catalog entries: every build, AMI per region, status and versions."""
    from imagefactory.catalog_view import show as show_image

    data = show_image(_home(), name)
    emit(data, json, _yaml_text(data))


def _yaml_text(data: Any) -> str:
    import io

    from ruamel.yaml import YAML

    buf = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(data, buf)
    return buf.getvalue().rstrip()


# ---- sandbox --------------------------------------------------------------------------------------

@task(help={"json": "Print JSON for scripts"})
@boundary
def up(c: Any, json: bool = False) -> None:
    """Start the local EC2 emulator (or reuse the running one) and print its endpoint."""
    from imagefactory.sandbox.emulator import ensure_up

    info = ensure_up(_home().emulator_dir)
    emit(_info(info), json, f"sandbox emulator {'reused' if info.reused else 'started'}: {info.endpoint} "
                            f"(pid {info.pid})")


@task(help={"json": "Print JSON for scripts"})
@boundary
def status(c: Any, json: bool = False) -> None:
    """Say whether the local EC2 emulator is running, and where."""
    from imagefactory.sandbox.emulator import status as emulator_status

    info = emulator_status(_home().emulator_dir)
    emit(_info(info) if info else {"running": False}, json,
         f"sandbox emulator running: {info.endpoint} (pid {info.pid})" if info else "sandbox emulator: not running")


@task(help={"force": "End sandbox instances' and builds' processes (disks kept); remove crashed builds' leftovers"})
@boundary
def down(c: Any, force: bool = False) -> None:
    """Stop the local EC2 emulator (its state is kept and restored on the next start)."""
    from imagefactory.sandbox.emulator import down as emulator_down
    from imagefactory.sandbox.leftovers import stop_all_for_down

    home = _home()
    stop_all_for_down(home, force=force, progress=say)
    print("sandbox emulator stopped" if emulator_down(home.emulator_dir) else "sandbox emulator: not running")


def _info(info: Any) -> dict[str, Any]:
    return {"running": True, "endpoint": info.endpoint, "port": info.port, "pid": info.pid,
            "state_dir": str(info.state_dir), "reused": info.reused}


from imagefactory.tasks_instances import connect, instances, launch, start, stop, terminate  # noqa: E402

recipe_ns = Collection("recipe", recipe_derive, check)
catalog_ns = Collection("catalog", catalog_list, show)
sandbox_ns = Collection("sandbox", up, status, down)
ns = Collection(bake, launch, connect, instances, stop, start, terminate, recipe_ns, catalog_ns, sandbox_ns)
