"""The recipe: what an image holds, as plain data with validation.

A recipe is derived once from a repository and written to `recipes/NAME.yaml`; from then on it is the
user's file. Its format is `imagefactory/schemas/recipe.schema.json`: `Recipe.from_dict` validates a loaded
mapping against it and raises `RecipeError` naming the file, the line, the field and the fix;
`Recipe.to_dict` gives the mapping to write back. Nothing here touches the disk.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from imagefactory.documents import clip, line_of
from imagefactory.errors import RecipeError
from imagefactory.names import NAME_RE as NAME_RE  # re-exported: the one name rule
from imagefactory.names import NAME_RULE, name_problem
from imagefactory.schemas import check, schema

RECIPE_VERSION = 1
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
    packages: tuple[str, ...] = ()   # pip requirement lines beyond the files (`--add-missing` adds here)


@dataclass(frozen=True)
class ImageSpec:
    """How the image is built: base OS, build instance, root volume, regions, login user."""

    base: str = "ubuntu-22.04"
    build_instance_type: str = "t3.large"
    volume_gb: int = 30
    regions: tuple[str, ...] = DEFAULT_REGIONS
    login_user: str = "ubuntu"
    kms_key: str | dict[str, str] | None = None   # one key for every region, or one per region

    def key_for(self, region: str) -> str | None:
        """The KMS key of `region`'s AMI (None: the AWS-managed aws/ebs key)."""
        return self.kms_key.get(region) if isinstance(self.kms_key, dict) else self.kms_key


@dataclass(frozen=True)
class Jupyter:
    """JupyterLab on the instance: the loopback port it listens on and extra extensions."""

    port: int = 8889
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Lifecycle:
    """How long `invoke prune` keeps the image's builds: the `keep` newest always; older ones deprecated after
    `deprecate_after_days` and deregistered (snapshots deleted) after `delete_after_days`."""

    keep: int = 3
    deprecate_after_days: int = 60
    delete_after_days: int = 120


@dataclass(frozen=True)
class Rebuild:
    """When a build is stale by age (`max_age_days`), and how many incremental builds may follow each
    other before a full one (`max_chain`)."""

    max_age_days: int = 30
    max_chain: int = 5

    def to_dict(self) -> dict[str, int]:
        """Only what differs from the defaults (a recipe that leaves `rebuild` out writes none)."""
        default = Rebuild()
        return {k: v for k, v in (("max_age_days", self.max_age_days), ("max_chain", self.max_chain))
                if v != getattr(default, k)}


@dataclass(frozen=True)
class NotebookRun:
    """A notebook of the repository; `run: true` executes it headless in the kernel env during the build."""

    path: str
    run: bool = False
    timeout: int = 600   # seconds per cell


FAIL_ON_IMPORT = ("provided", "all", "never")


@dataclass(frozen=True)
class Smoke:
    """What the smoke test proves beyond the recipe's packages: the code's imports (`fail_on_import`:
    "provided" fails the bake for modules the recipe claims to provide and warns for the rest, "all" fails
    for any, "never" only warns) and the notebooks to run."""

    fail_on_import: str = "provided"
    notebooks: tuple[NotebookRun, ...] = ()


@dataclass(frozen=True)
class DataSource:
    """Data put into the image at build time: a download (`url`, `sha256`, optional `unpack`) or a git
    repository at a recorded `commit`; `dest` is under the repository (relative) or under /data/."""

    dest: str
    url: str | None = None
    sha256: str | None = None
    unpack: bool = False
    git: str | None = None
    commit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.git:
            return {"git": self.git, "commit": self.commit, "dest": self.dest}
        return {"url": self.url, "sha256": self.sha256, "dest": self.dest, "unpack": self.unpack}


@dataclass(frozen=True)
class Recipe:
    name: str
    source: Source
    environment: Environment = field(default_factory=Environment)
    image: ImageSpec = field(default_factory=ImageSpec)
    jupyter: Jupyter = field(default_factory=Jupyter)
    tags: dict[str, str] = field(default_factory=dict)
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    rebuild: Rebuild = field(default_factory=Rebuild)
    smoke: Smoke = field(default_factory=Smoke)
    data: tuple[DataSource, ...] = ()

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
                **({"packages": list(env.packages)} if env.packages else {}),  # absent: digests unchanged
            },
            "image": {
                "base": self.image.base,
                "build_instance_type": self.image.build_instance_type,
                "volume_gb": self.image.volume_gb,
                "regions": list(self.image.regions),
                "login_user": self.image.login_user,
                **({"kms_key": self.image.kms_key} if self.image.kms_key else {}),  # absent: digests unchanged
            },
            "jupyter": {"port": self.jupyter.port, "extensions": list(self.jupyter.extensions)},
            "tags": dict(self.tags),
            **({"lifecycle": asdict(self.lifecycle)} if self.lifecycle != Lifecycle() else {}),  # absent: defaults
            **({"rebuild": self.rebuild.to_dict()} if self.rebuild.to_dict() else {}),  # absent: digests unchanged
            **self._proving(),
        }

    def _proving(self) -> dict[str, Any]:
        """`smoke` and `data`, only when set (absent: the digests of older recipes are unchanged)."""
        out: dict[str, Any] = {}
        if self.smoke != Smoke():
            out["smoke"] = {"fail_on_import": self.smoke.fail_on_import,
                            "notebooks": [{"path": n.path, "run": n.run, "timeout": n.timeout}
                                          for n in self.smoke.notebooks]}
        if self.data:
            out["data"] = [d.to_dict() for d in self.data]
        return out

    def digest(self) -> str:
        """sha256 over the canonical JSON of the recipe, without `source.commit`: the commit is a fact of
        each build (recorded beside the digest), so a new commit alone does not change the recipe."""
        data = self.to_dict()
        data["source"] = {k: v for k, v in data["source"].items() if k != "commit"}
        data.pop("lifecycle", None)  # how long builds are kept, and when they are rebuilt,
        data.pop("rebuild", None)  # are not what the image holds
        blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()

    def with_source(self, source: Source) -> Recipe:
        return replace(self, source=source)

    def with_regions(self, regions: tuple[str, ...]) -> Recipe:
        return replace(self, image=replace(self.image, regions=regions))

    def with_python(self, python: PythonSpec) -> Recipe:
        return replace(self, environment=replace(self.environment, python=python))

    def with_packages(self, packages: tuple[str, ...]) -> Recipe:
        return replace(self, environment=replace(self.environment, packages=packages))

    @classmethod
    def from_dict(cls, data: Any, origin: str = "recipe") -> Recipe:
        """Validate a loaded mapping against recipe.schema.json. `origin` (the file path) starts every error
        message; a ruamel round-trip mapping also gives the line."""
        if isinstance(data, dict) and data.get("recipe_version", RECIPE_VERSION) != RECIPE_VERSION:
            line = line_of(data, "recipe_version")
            raise RecipeError(f"{origin}{f':{line}' if line else ''}: field 'recipe_version' is "
                              f"{clip(data.get('recipe_version'))}, this factory reads {RECIPE_VERSION}",
                              "upgrade imagefactory or re-derive the recipe")
        if isinstance(data, dict) and isinstance(data.get("name"), str) and name_problem(data["name"]):
            line = line_of(data, "name")
            raise RecipeError(f"{origin}{f':{line}' if line else ''}: field 'name' {clip(data['name'])} is not a "
                              f"valid image name: {name_problem(data['name'])}", NAME_RULE)
        check(data, "recipe", origin, RecipeError)
        recipe = _build(data)
        _check_lifecycle(recipe.lifecycle, data, origin)
        return recipe


def _patterns() -> dict[str, re.Pattern[str]]:
    env = schema("recipe")["properties"]["environment"]["properties"]
    return {"apt": re.compile(env["apt"]["items"]["pattern"].strip("^$")),
            "python": re.compile(env["python"]["properties"]["version"]["pattern"].strip("^$"))}


def _kms_key(value: Any) -> str | dict[str, str] | None:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()} or None
    return str(value) if value else None


def _build(top: dict[str, Any]) -> Recipe:
    """The Recipe of a mapping that passed the schema: absent or null fields take their defaults."""
    src, env = top["source"], top.get("environment") or {}
    img, jup = top.get("image") or {}, top.get("jupyter") or {}
    py = env.get("python") or {}
    return Recipe(
        name=str(top["name"]),
        source=Source(repo=str(src["repo"]), ref=_opt(src.get("ref")), commit=str(src["commit"])),
        environment=Environment(
            python=PythonSpec(version=str(py.get("version") or DEFAULT_PYTHON),
                              source=str(py.get("source") or "stated"),
                              reason=str(py.get("reason") or "set in the recipe")),
            apt=_strs(env.get("apt")), conda=_strs(env.get("conda")), pip=_strs(env.get("pip")),
            pipfile=_opt(env.get("pipfile")), install_repo=bool(env.get("install_repo") or False),
            post_build=tuple(PostBuild(str(p["path"]), bool(p.get("run") or False))
                             for p in env.get("post_build") or ()),
            start=_opt(env.get("start")),
            packages=_strs(env.get("packages")),
        ),
        image=ImageSpec(
            base=str(img.get("base") or ImageSpec.base),
            build_instance_type=str(img.get("build_instance_type") or ImageSpec.build_instance_type),
            volume_gb=int(img.get("volume_gb") or ImageSpec.volume_gb),
            regions=_strs(img.get("regions")) or DEFAULT_REGIONS,
            login_user=str(img.get("login_user") or ImageSpec.login_user),
            kms_key=_kms_key(img.get("kms_key")),
        ),
        jupyter=Jupyter(port=int(jup.get("port") or Jupyter.port), extensions=_strs(jup.get("extensions"))),
        tags={str(k): str(v) for k, v in (top.get("tags") or {}).items()},
        lifecycle=_lifecycle(top.get("lifecycle") or {}),
        rebuild=_rebuild(top.get("rebuild") or {}),
        smoke=_smoke(top.get("smoke") or {}),
        data=tuple(_data(d) for d in top.get("data") or ()),
    )


def _lifecycle(value: dict[str, Any]) -> Lifecycle:
    return Lifecycle(**{k: int(v) for k, v in value.items() if v is not None})


def _check_lifecycle(rules: Lifecycle, data: dict[str, Any], origin: str) -> None:
    """The rule the schema cannot state: nothing is deregistered before it is deprecated."""
    if rules.delete_after_days < rules.deprecate_after_days:
        line = line_of(data.get("lifecycle"), "delete_after_days") if isinstance(data.get("lifecycle"), dict) else None
        raise RecipeError(f"{origin}{f':{line}' if line else ''}: field 'lifecycle.delete_after_days' is "
                          f"{rules.delete_after_days}, before lifecycle.deprecate_after_days "
                          f"({rules.deprecate_after_days})",
                          "give delete_after_days at least deprecate_after_days (defaults: 60 and 120)")


def _rebuild(data: dict[str, Any]) -> Rebuild:
    age, chain = data.get("max_age_days"), data.get("max_chain")
    return Rebuild(max_age_days=Rebuild.max_age_days if age is None else int(age),
                   max_chain=Rebuild.max_chain if chain is None else int(chain))


def _smoke(smoke: dict[str, Any]) -> Smoke:
    return Smoke(fail_on_import=str(smoke.get("fail_on_import") or Smoke.fail_on_import),
                 notebooks=tuple(NotebookRun(str(n["path"]), bool(n.get("run") or False),
                                             int(n.get("timeout") or NotebookRun.timeout))
                                 for n in smoke.get("notebooks") or ()))


def _data(entry: dict[str, Any]) -> DataSource:
    return DataSource(dest=str(entry["dest"]), url=_opt(entry.get("url")), sha256=_opt(entry.get("sha256")),
                      unpack=bool(entry.get("unpack") or False), git=_opt(entry.get("git")),
                      commit=_opt(entry.get("commit")))


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or ())


APT_RE = _patterns()["apt"]
PYTHON_RE = _patterns()["python"]
