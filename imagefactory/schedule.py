"""The GitHub Actions workflow that rebuilds a factory's stale images, as data (pure: no I/O).

`github_workflow(options)` gives the workflow as ruamel.yaml nodes (a dict with comments), `workflow_text`
dumps it; no user value is ever spliced into YAML or shell text. Three jobs, each with its own least
permissions under a top-level `permissions: {}`:

    detect   AWS role (OIDC)  `imagefactory stale --json` -> the names of the stale images (job output)
    build    AWS role (OIDC)  matrix over those names: `imagefactory rebuild NAME`, catalog.yaml uploaded
    propose  repo write       matrix again: that catalog.yaml proposed as a pull request per image

The role that can bake never has write access to the repository, and the job that writes never holds AWS
credentials. Values reaching a `run:` step come through `env:`, never `${{ }}` inside the script.
The user's values are checked before they get here (`imagefactory.schedule_checks`; regions with
`imagefactory.cloud.target.check_regions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import LiteralScalarString

from imagefactory.documents import dump_yaml

WORKFLOW_PATH = ".github/workflows/imagefactory-rebuild.yml"
DEFAULT_CRON = "0 6 * * 1"
RUNNER = "ubuntu-24.04"
RUNNER_PYTHON = "3.12"   # the Python the factory itself runs on in the workflow (not an image's kernel)
ROLE_VARIABLE = "IMAGEFACTORY_ROLE_ARN"
BUILD_TIMEOUT_MINUTES = 180


@dataclass(frozen=True)
class Action:
    """A third-party action, pinned by the full commit SHA of a release tag (read from the action's repo)."""

    repo: str
    tag: str
    sha: str
    note: str = ""   # after the tag in the `uses:` line's comment

    @property
    def uses(self) -> str:
        return f"{self.repo}@{self.sha}"


# Each SHA is the commit its release tag points at, read from the action's own repository (`git rev-parse
# TAG^{commit}`) in December 2026; change a tag and its SHA together, never one of them.
CHECKOUT = Action("actions/checkout", "v7.0.1", "3d3c42e5aac5ba805825da76410c181273ba90b1")
SETUP_PYTHON = Action("actions/setup-python", "v7.0.0", "5fda3b95a4ea91299a34e894583c3862153e4b97")
SETUP_PACKER = Action("hashicorp/setup-packer", "v3.1.0", "1aa358be5cf73883762b302a3a03abd66e75b232")
AWS_CREDENTIALS = Action("aws-actions/configure-aws-credentials", "v6.2.3",
                         "e6de054238d6b7531b4efff3b6587d9aade6a06c")
UPLOAD_ARTIFACT = Action("actions/upload-artifact", "v7.0.0", "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f")
DOWNLOAD_ARTIFACT = Action("actions/download-artifact", "v8.0.1", "3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c")
# zizmor (pedantic) suggests `gh pr create` instead; that would need a push credential in a `run:` step and
# scripting what the action does (reuse the image's branch and pull request, nothing when nothing changed)
CREATE_PULL_REQUEST = Action("peter-evans/create-pull-request", "v8.1.1", "5f6978faf089d4d20b00c7766989d076bb2fc7f1",
                             note="# zizmor: ignore[superfluous-actions] (it updates one pull request per image)")
ACTIONS = (CHECKOUT, SETUP_PYTHON, SETUP_PACKER, AWS_CREDENTIALS, UPLOAD_ARTIFACT, DOWNLOAD_ARTIFACT,
           CREATE_PULL_REQUEST)


@dataclass(frozen=True)
class GithubSchedule:
    """What the workflow is made from; every field already checked (`imagefactory.schedule_files.github`)."""

    cron: str
    regions: tuple[str, ...]
    role_arn: str | None      # None: the repository variable IMAGEFACTORY_ROLE_ARN
    max_parallel: int
    install: str              # what pip installs to get the factory: "." (this repository) or a requirement
    packer_version: str
    factory_version: str


# -- the workflow ------------------------------------------------------------------------------------------

def header(options: GithubSchedule) -> str:
    role = options.role_arn or f"the repository variable {ROLE_VARIABLE} (Settings > Secrets and variables > " \
                               "Actions > Variables)"
    return "\n".join([
        f"Written by `imagefactory schedule.github` (imagefactory {options.factory_version}): rebuilds the",
        "factory's stale images. Change it by running that command again with --force, not by hand.",
        "",
        f'When: cron "{options.cron}" (UTC), and on demand (Actions tab > imagefactory rebuild > Run workflow,',
        "where images named in `images` are rebuilt whether they are stale or not).",
        "GitHub runs scheduled workflows from the default branch only, may start them late at busy times, and",
        "DISABLES THEM IN PUBLIC REPOSITORIES AFTER 60 DAYS WITHOUT ACTIVITY in the repository. Any commit",
        "keeps it alive (merging the pull requests this workflow opens is one); once disabled, enable it again",
        "in the Actions tab or with `gh workflow enable imagefactory-rebuild.yml`.",
        "",
        "AWS: short-lived credentials through GitHub's OIDC provider; no access key is stored anywhere.",
        f"The role: {role}.",
        "Its trust policy must allow token.actions.githubusercontent.com with `aud` sts.amazonaws.com and",
        "`sub` limited to this repository's default branch (repo:OWNER/NAME:ref:refs/heads/main), and its",
        "permissions the EC2 calls Packer and the factory make (see README, Real AWS) in "
        + ", ".join(options.regions) + ".",
        "",
        "Jobs: detect (which images are stale, and why: see its summary) -> build (one job per stale image,",
        f"at most {options.max_parallel} at once, one run per image at a time) -> propose (a pull request per image",
        "with its updated catalog.yaml; nothing is pushed to the default branch). Until a rebuild's pull",
        "request is merged, the next run still sees that image as stale. For GitHub's token to open pull",
        "requests, allow it in Settings > Actions > General > Workflow permissions (\"Allow GitHub Actions to",
        "create and approve pull requests\"); checks of other workflows do not run on pull requests it opens.",
        "Every action is pinned to a full commit SHA; the release tag is in the comment beside it.",
    ])


def _step(name: str, *, uses: Action | None = None, run: str | None = None, with_: dict[str, Any] | None = None,
          env: dict[str, str] | None = None, if_: str | None = None, id_: str | None = None) -> CommentedMap:
    step = CommentedMap()
    step["name"] = name
    if id_:
        step["id"] = id_
    if if_:
        step["if"] = if_
    if uses is not None:
        step["uses"] = uses.uses
        step.yaml_add_eol_comment(uses.tag + (f"  {uses.note}" if uses.note else ""), "uses")
    if with_:
        step["with"] = CommentedMap(with_)
    if env:
        step["env"] = CommentedMap(env)
    if run is not None:
        step["run"] = LiteralScalarString(run) if "\n" in run else run
    return step


def _checkout() -> CommentedMap:
    return _step("Check out the factory home", uses=CHECKOUT, with_={"persist-credentials": False})


def _factory(options: GithubSchedule) -> list[CommentedMap]:
    """Python, the factory, and AWS credentials: what the detect and build jobs both need."""
    return [
        _step("Set up Python", uses=SETUP_PYTHON, with_={"python-version": RUNNER_PYTHON}),
        _step("Install imagefactory", env={"IMAGEFACTORY_INSTALL": options.install},
              run='python -m pip install --upgrade pip\npython -m pip install "$IMAGEFACTORY_INSTALL"\n'),
        _step("AWS credentials (OIDC, no stored key)", uses=AWS_CREDENTIALS,
              with_={"role-to-assume": options.role_arn or f"${{{{ vars.{ROLE_VARIABLE} }}}}",
                     "aws-region": options.regions[0], "role-session-name": "imagefactory-rebuild"}),
    ]


STALE_REPORT = "${{ runner.temp }}/stale.json"
# `imagefactory stale --json` -> the job's outputs `images` (a JSON list, the build matrix: the stale images,
# or the catalog images a person named when starting the run) and `count`, and a table of every image's
# status and reasons in the job's summary
MATRIX_SCRIPT = """\
python - "$STALE_REPORT" <<'PY'
import json, os, sys
report = json.load(open(sys.argv[1]))
requested = list(dict.fromkeys(os.environ.get("REQUESTED", "").replace(",", " ").split()))
known = {image["name"] for image in report["images"]}
if set(requested) - known:
    sys.exit(f"error: not in the catalog: {', '.join(n for n in requested if n not in known)} "
             f"(its images: {', '.join(sorted(known)) or 'none'})")
images = requested or report["stale"]
with open(os.environ["GITHUB_OUTPUT"], "a") as out:
    out.write(f"images={json.dumps(images)}\\ncount={len(images)}\\n")
def cell(values):
    text = "; ".join(v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in values)
    return " ".join(text.replace("|", "\\\\|").split()) or "-"
with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as summary:
    summary.write("| image | latest build | status | why | not known |\\n| --- | --- | --- | --- | --- |\\n")
    for image in report["images"]:
        summary.write(f"| {image['name']} | {image.get('latest') or '-'} | {image['status']} | "
                      f"{cell(image.get('reasons', []))} | {cell(image.get('unknown', []))} |\\n")
PY
"""


def _oidc_permissions() -> CommentedMap:
    permissions = CommentedMap({"contents": "read", "id-token": "write"})
    permissions.yaml_add_eol_comment("read the factory home", "contents")
    permissions.yaml_add_eol_comment("ask GitHub for the OIDC token the AWS role trusts", "id-token")
    return permissions


def _detect(options: GithubSchedule) -> CommentedMap:
    job = CommentedMap()
    job["name"] = "Which images are stale"
    job["runs-on"] = RUNNER
    job["timeout-minutes"] = 20
    job["permissions"] = _oidc_permissions()
    job["outputs"] = CommentedMap({"images": "${{ steps.stale.outputs.images }}",
                                   "count": "${{ steps.stale.outputs.count }}"})
    job["steps"] = [
        _checkout(), *_factory(options),
        _step("imagefactory stale", env={"STALE_REPORT": STALE_REPORT},
              run='imagefactory stale --json > "$STALE_REPORT"'),
        _step("The stale images, as the build matrix", id_="stale",
              env={"STALE_REPORT": STALE_REPORT, "REQUESTED": "${{ inputs.images }}"}, run=MATRIX_SCRIPT),
    ]
    return job


def _matrix(options: GithubSchedule) -> CommentedMap:
    strategy = CommentedMap()
    strategy["fail-fast"] = False
    strategy.yaml_add_eol_comment("one image failing never stops the others", "fail-fast")
    strategy["max-parallel"] = options.max_parallel
    strategy["matrix"] = CommentedMap({"image": "${{ fromJSON(needs.detect.outputs.images) }}"})
    return strategy


def _build(options: GithubSchedule) -> CommentedMap:
    job = CommentedMap()
    job["name"] = "Rebuild ${{ matrix.image }}"
    job["needs"] = "detect"
    job["if"] = "needs.detect.outputs.count != '0'"
    job["runs-on"] = RUNNER
    job["timeout-minutes"] = BUILD_TIMEOUT_MINUTES
    job["permissions"] = _oidc_permissions()
    job["strategy"] = _matrix(options)
    job["concurrency"] = CommentedMap({"group": "imagefactory-rebuild-${{ matrix.image }}",
                                       "cancel-in-progress": False})
    job.yaml_add_eol_comment("a bake cancelled midway leaves cloud resources to clean up", "concurrency")
    job["steps"] = [
        _checkout(),
        _step("Set up Packer", uses=SETUP_PACKER, with_={"version": options.packer_version}),
        *_factory(options),
        _step("imagefactory rebuild", env={"IMAGE": "${{ matrix.image }}"}, run='imagefactory rebuild "$IMAGE"'),
        _step("Keep the updated catalog", uses=UPLOAD_ARTIFACT, if_="${{ !cancelled() }}",
              with_={"name": "catalog-${{ matrix.image }}", "path": "catalog.yaml", "if-no-files-found": "error",
                     "retention-days": 7}),
    ]
    return job


def _propose() -> CommentedMap:
    job = CommentedMap()
    job["name"] = "Propose ${{ matrix.image }}'s catalog"
    job["needs"] = ["detect", "build"]
    job["if"] = "${{ !cancelled() && needs.detect.result == 'success' && needs.detect.outputs.count != '0' }}"
    job["runs-on"] = RUNNER
    job["timeout-minutes"] = 10
    permissions = CommentedMap({"contents": "write", "pull-requests": "write"})
    permissions.yaml_add_eol_comment("push the pull request's branch (never the default branch)", "contents")
    permissions.yaml_add_eol_comment("open or update the pull request", "pull-requests")
    job["permissions"] = permissions
    strategy = CommentedMap()
    strategy["fail-fast"] = False
    strategy["matrix"] = CommentedMap({"image": "${{ fromJSON(needs.detect.outputs.images) }}"})
    job["strategy"] = strategy
    job["concurrency"] = CommentedMap({"group": "imagefactory-propose-${{ matrix.image }}",
                                       "cancel-in-progress": False})
    job["steps"] = [
        _checkout(),
        _step("The catalog its rebuild wrote", uses=DOWNLOAD_ARTIFACT,
              with_={"name": "catalog-${{ matrix.image }}", "path": "."}),
        _step("Pull request", uses=CREATE_PULL_REQUEST, with_={
            "add-paths": "catalog.yaml",
            "branch": "imagefactory/rebuild-${{ matrix.image }}",
            "commit-message": "catalog: rebuild of ${{ matrix.image }}",
            "title": "imagefactory: rebuild of ${{ matrix.image }}",
            "body": "The scheduled imagefactory rebuild of `${{ matrix.image }}` recorded this build in "
                    "catalog.yaml (run ${{ github.server_url }}/${{ github.repository }}/actions/runs/"
                    "${{ github.run_id }}). Merge it so the next run sees the image as fresh.",
            "delete-branch": True,
        }),
    ]
    return job


def github_workflow(options: GithubSchedule) -> CommentedMap:
    """The workflow as ruamel.yaml nodes (a dict), comments included."""
    doc = CommentedMap()
    doc["name"] = "imagefactory rebuild"
    on = CommentedMap()
    on["schedule"] = [CommentedMap({"cron": options.cron})]
    on["workflow_dispatch"] = CommentedMap({"inputs": CommentedMap({"images": CommentedMap({
        "description": "Images to rebuild, stale or not (names, separated by spaces or commas); empty: the stale ones",
        "required": False, "type": "string", "default": ""})})})
    doc["on"] = on
    doc["concurrency"] = CommentedMap({"group": "imagefactory-rebuild", "cancel-in-progress": False})
    doc.yaml_add_eol_comment("one run at a time; a run started meanwhile waits", "concurrency")
    doc["permissions"] = CommentedMap()
    doc.yaml_add_eol_comment("nothing by default: each job asks for what it needs", "permissions")
    doc["jobs"] = CommentedMap({"detect": _detect(options), "build": _build(options), "propose": _propose()})
    doc.yaml_set_start_comment(header(options))
    return doc


def workflow_text(options: GithubSchedule) -> str:
    return dump_yaml(github_workflow(options))
