"""`bake`: a repository into AMIs, one per region, recorded in the catalog."""

from __future__ import annotations

from typing import Any

from imagefactory.cli.common import JSON_HELP, REPO_HELP, csv, home, render, say, task
from imagefactory.result import Result


@task(help={
    "repo": REPO_HELP,
    "ref": "Branch, tag or commit to build (default: the default branch)",
    "name": "Image name (default: from the repo's name)",
    "regions": "Comma-separated AWS regions, the first is where it builds (default: the recipe's)",
    "sandbox": "Use the local EC2 emulator even if AWS credentials are configured",
    "python": "Override the recipe's Python version for this bake (e.g. 3.11), recorded in the catalog",
    "resolve": "Resolve the recipe's pip packages with uv before building (default on; --no-resolve skips)",
    "api_only": "Sandbox only: register AMIs without provisioning anything (fast pipeline rehearsal)",
    "extra_ca": "PEM CA bundle to trust during provisioning (TLS-intercepting proxies); or IMAGEFACTORY_EXTRA_CA",
    "parent": "Build id to start from (an incremental bake: the parent's image, new commit, no environment "
              "install); a parent that cannot serve gives a full bake, saying why",
    "json": JSON_HELP,
})
def bake(c: Any, repo: str, ref: str | None = None, name: str | None = None, regions: str | None = None,
         sandbox: bool = False, python: str | None = None, resolve: bool = True, api_only: bool = False,
         extra_ca: str | None = None, parent: str | None = None, json: bool = False) -> None:
    """Bake a repo into AMIs: repo -> recipe -> Packer -> one AMI per region -> catalog."""
    from imagefactory.bake import BakeOptions
    from imagefactory.bake import bake as run_bake

    opts = BakeOptions(repo=repo, ref=ref, name=name, regions=csv(regions), sandbox=sandbox, python=python,
                       resolve=resolve, api_only=api_only, extra_ca=extra_ca, parent=parent)
    done = run_bake(home(), opts, say)
    amis = ", ".join(f"{r}={a}" for r, a in sorted(done.amis.items()))
    built = f" (incremental, from {done.parent_build})" if done.parent_build else ""
    render(Result(done.to_dict(), f"{done.image} {done.build_id}{built}: {amis}"), json)
