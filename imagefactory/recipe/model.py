"""The recipe: what an image holds, as plain data with validation.

A recipe is derived once from a repository and written to `recipes/NAME.yaml`; from then on it is the
user's file. `Recipe.from_dict` validates a loaded mapping and raises `RecipeError` naming the file and the
field; `Recipe.to_dict` gives the mapping to write back. Nothing here touches the disk.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from imagefactory.errors import RecipeError

RECIPE_VERSION = 1
NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
PYTHON_RE = re.compile(r"3\.\d{1,2}")
APT_RE = re.compile(r"[a-z0-9][a-z0-9+.-]*(:[a-z0-9]+)?(=[A-Za-z0-9.+:~-]+)?")
REGION_RE = re.compile(r"[a-z]{2}(-gov)?-[a-z]+-\d")
INSTANCE_TYPE_RE = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9]+")
TAG_KEY_RE = re.compile(r"[A-Za-z0-9 _.:/=+@-]{1,128}")
BASES = ("ubuntu-22.04", "ubuntu-24.04")
PYTHON_SOURCES = ("stated", "inferred", "default", "override")
DEFAULT_PYTHON = "3.12"
DEFAULT_REGIONS = ("us-west-2", "us-east-2")


@dataclass(frozen=True)
class Source:
    """Where the code comes from: the repo as a URL or path, the ref asked for, the commit resolved.

    For a plain directory (no git), `commit` is a content digest `dir-sha256:<hex>`.
    """

    repo: str
    ref: str | None
    commit: str


@dataclass(frozen=True)
class PythonSpec:
    """The kernel's Python minor version, and where it came from (`source`) and why (`reason`)."""

    version: str = DEFAULT_PYTHON
    source: str = "default"
    reason: str = "no Python version stated or inferable; using the factory default"


@dataclass(frozen=True)
class PostBuild:
    """A script from the repo to run after the environment is installed; off unless `run` is true."""

    path: str
    run: bool = False


@dataclass(frozen=True)
class Environment:
    """What gets installed into the kernel environment, in this order:
    apt packages, conda files (micromamba), pip requirement files (uv), Pipfile, the repo as a package,
    then post-build scripts that have `run: true`."""

    python: PythonSpec = field(default_factory=PythonSpec)
    apt: tuple[str, ...] = ()
    conda: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    pipfile: str | None = None
    install_repo: bool = False
    post_build: tuple[PostBuild, ...] = ()
    start: str | None = None


@dataclass(frozen=True)
class ImageSpec:
    """How the image is built: base OS, build instance, root volume, regions, login user."""

    base: str = "ubuntu-22.04"
    build_instance_type: str = "t3.large"
    volume_gb: int = 30
    regions: tuple[str, ...] = DEFAULT_REGIONS
    login_user: str = "ubuntu"


@dataclass(frozen=True)
class Jupyter:
    """JupyterLab on the instance: the loopback port it listens on and extra extensions."""

    port: int = 8889
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipe:
    name: str
    source: Source
    environment: Environment = field(default_factory=Environment)
    image: ImageSpec = field(default_factory=ImageSpec)
    jupyter: Jupyter = field(default_factory=Jupyter)
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        env = self.environment
        return {
            "recipe_version": RECIPE_VERSION,
            "name": self.name,
            "source": {"repo": self.source.repo, "ref": self.source.ref, "commit": self.source.commit},
            "environment": {
                "python": {
                    "version": env.python.version,
                    "source": env.python.source,
                    "reason": env.python.reason,
                },
                "apt": list(env.apt),
                "conda": list(env.conda),
                "pip": list(env.pip),
                "pipfile": env.pipfile,
                "install_repo": env.install_repo,
                "post_build": [{"path": p.path, "run": p.run} for p in env.post_build],
                "start": env.start,
            },
            "image": {
                "base": self.image.base,
                "build_instance_type": self.image.build_instance_type,
                "volume_gb": self.image.volume_gb,
                "regions": list(self.image.regions),
                "login_user": self.image.login_user,
            },
            "jupyter": {"port": self.jupyter.port, "extensions": list(self.jupyter.extensions)},
            "tags": dict(self.tags),
        }

    def digest(self) -> str:
        """sha256 over the canonical JSON of the recipe, without `source.commit`: the commit is a fact of
        each build (recorded beside the digest), so a new commit alone does not change the recipe."""
        data = self.to_dict()
        data["source"] = {k: v for k, v in data["source"].items() if k != "commit"}
        blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()

    def with_source(self, source: Source) -> Recipe:
        return replace(self, source=source)

    def with_regions(self, regions: tuple[str, ...]) -> Recipe:
        return replace(self, image=replace(self.image, regions=regions))

    def with_python(self, python: PythonSpec) -> Recipe:
        return replace(self, environment=replace(self.environment, python=python))

    @classmethod
    def from_dict(cls, data: Any, origin: str = "recipe") -> Recipe:
        """Validate a loaded mapping. `origin` (the file path) starts every error message."""
        return _Reader(origin).recipe(data)


class _Reader:
    """Walks a loaded mapping field by field; each error names `origin: field.path` and the fix."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, path: str, problem: str, fix: str) -> RecipeError:
        return RecipeError(f"{self.origin}: field '{path}' {problem}", fix)

    def mapping(self, value: Any, path: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a mapping, not {type(value).__name__}", "see recipes/README.md")
        return dict(value)

    def string(self, value: Any, path: str, pattern: re.Pattern[str] | None = None, fix: str = "") -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, "must be a non-empty string", fix or "give a value")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(path, f"has an invalid value {value!r}", fix or f"match {pattern.pattern}")
        return value

    def opt_string(self, value: Any, path: str) -> str | None:
        return None if value is None else self.string(value, path)

    def strings(self, value: Any, path: str, pattern: re.Pattern[str] | None = None, fix: str = "") -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(path, "must be a list", "write it as a YAML list, one item per line")
        return tuple(self.string(v, f"{path}[{i}]", pattern, fix) for i, v in enumerate(value))

    def boolean(self, value: Any, path: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(path, f"must be true or false, not {value!r}", "write true or false")
        return value

    def integer(self, value: Any, path: str, default: int, low: int, high: int) -> int:
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.fail(path, f"must be a whole number from {low} to {high}, not {value!r}", "fix the number")
        return value

    def recipe(self, data: Any) -> Recipe:
        top = self.mapping(data, "(top level)")
        version = top.get("recipe_version", RECIPE_VERSION)
        if version != RECIPE_VERSION:
            raise self.fail("recipe_version", f"is {version!r}, this factory reads {RECIPE_VERSION}",
                            "upgrade imagefactory or re-derive the recipe")
        name = self.string(top.get("name"), "name", NAME_RE,
                           "use lowercase letters, digits and dashes, starting with a letter or digit")
        src = self.mapping(top.get("source"), "source")
        source = Source(
            repo=self.string(src.get("repo"), "source.repo", fix="give the repository URL or path"),
            ref=self.opt_string(src.get("ref"), "source.ref"),
            commit=self.string(src.get("commit"), "source.commit", fix="re-derive the recipe to record it"),
        )
        return Recipe(
            name=name,
            source=source,
            environment=self.environment(self.mapping(top.get("environment"), "environment")),
            image=self.image(self.mapping(top.get("image"), "image")),
            jupyter=self.jupyter(self.mapping(top.get("jupyter"), "jupyter")),
            tags=self.tags(self.mapping(top.get("tags"), "tags")),
        )

    def environment(self, env: dict[str, Any]) -> Environment:
        py = self.mapping(env.get("python"), "environment.python")
        source = py.get("source", "stated")
        if source not in PYTHON_SOURCES:
            raise self.fail("environment.python.source", f"is {source!r}", f"use one of {', '.join(PYTHON_SOURCES)}")
        python = PythonSpec(
            version=self.string(str(py.get("version", DEFAULT_PYTHON)), "environment.python.version", PYTHON_RE,
                                "write a minor version such as \"3.8\" (quoted)"),
            source=source,
            reason=str(py.get("reason") or "set in the recipe"),
        )
        post = env.get("post_build") or []
        if not isinstance(post, list):
            raise self.fail("environment.post_build", "must be a list", "list items as {path: ..., run: false}")
        post_build = []
        for i, item in enumerate(post):
            m = self.mapping(item, f"environment.post_build[{i}]")
            post_build.append(PostBuild(
                path=self.string(m.get("path"), f"environment.post_build[{i}].path"),
                run=self.boolean(m.get("run"), f"environment.post_build[{i}].run", False),
            ))
        return Environment(
            python=python,
            apt=self.strings(env.get("apt"), "environment.apt", APT_RE, "use Debian package names such as libgdal-dev"),
            conda=self.strings(env.get("conda"), "environment.conda"),
            pip=self.strings(env.get("pip"), "environment.pip"),
            pipfile=self.opt_string(env.get("pipfile"), "environment.pipfile"),
            install_repo=self.boolean(env.get("install_repo"), "environment.install_repo", False),
            post_build=tuple(post_build),
            start=self.opt_string(env.get("start"), "environment.start"),
        )

    def image(self, img: dict[str, Any]) -> ImageSpec:
        base = img.get("base", ImageSpec.base)
        if base not in BASES:
            raise self.fail("image.base", f"is {base!r}", f"use one of {', '.join(BASES)}")
        regions = self.strings(img.get("regions"), "image.regions", REGION_RE, "use AWS region names such as us-west-2")
        return ImageSpec(
            base=base,
            build_instance_type=self.string(img.get("build_instance_type", ImageSpec.build_instance_type),
                                            "image.build_instance_type", INSTANCE_TYPE_RE,
                                            "use an EC2 instance type such as t3.large"),
            volume_gb=self.integer(img.get("volume_gb"), "image.volume_gb", ImageSpec.volume_gb, 8, 16384),
            regions=regions or DEFAULT_REGIONS,
            login_user=self.string(img.get("login_user", ImageSpec.login_user), "image.login_user",
                                   re.compile(r"[a-z_][a-z0-9_-]{0,31}"), "use a Linux user name such as ubuntu"),
        )

    def jupyter(self, jup: dict[str, Any]) -> Jupyter:
        return Jupyter(
            port=self.integer(jup.get("port"), "jupyter.port", Jupyter.port, 1024, 65535),
            extensions=self.strings(jup.get("extensions"), "jupyter.extensions"),
        )

    def tags(self, tags: dict[str, Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in tags.items():
            k = self.string(str(key), f"tags.{key}", TAG_KEY_RE, "tag keys use letters, digits, spaces and _.:/=+@-")
            if k.lower().startswith("aws:"):
                raise self.fail(f"tags.{key}", "uses the reserved prefix 'aws:'", "rename the tag")
            if not isinstance(value, (str, int, float, bool)) or len(str(value)) > 256:
                raise self.fail(f"tags.{key}", "must be a short text (at most 256 characters)", "shorten the value")
            out[k] = str(value)
        return out
