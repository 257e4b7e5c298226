"""Scheduled rebuilds: the GitHub Actions workflow (pure rendering, then the written file checked by
check-jsonschema's GitHub workflow schema and audited by zizmor), the crontab line (run for real by sh) and
the systemd user units (checked by systemd-analyze verify)."""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeRepo, cli_env, new_home, run_cli, stop_emulator
from ruamel.yaml import YAML

from imagefactory import __version__
from imagefactory.errors import UsageError
from imagefactory.home import Home
from imagefactory.packer import TESTED_VERSION, find_packer
from imagefactory.schedule import (
    ACTIONS,
    SETUP_PACKER,
    WORKFLOW_PATH,
    GithubSchedule,
    github_workflow,
    workflow_text,
)
from imagefactory.schedule_checks import check_cron, check_install, check_role_arn
from imagefactory.schedule_lab import LabSchedule, check_calendar, crontab_line

BIN = Path(sys.executable).parent
ROLE = "arn:aws:iam::123456789012:role/imagefactory-rebuild"


def options(**changes: Any) -> GithubSchedule:
    base = {"cron": "0 6 * * 1", "regions": ("us-west-2", "us-east-2"), "role_arn": None, "max_parallel": 3,
            "install": "imagefactory==0.1.0", "packer_version": TESTED_VERSION, "factory_version": "0.1.0"}
    return GithubSchedule(**{**base, **changes})


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job["steps"])


def uses(job: dict[str, Any], action_repo: str) -> list[dict[str, Any]]:
    return [s for s in steps(job) if s.get("uses", "").startswith(action_repo + "@")]


# -- the workflow as data --------------------------------------------------------------------------------

def test_workflow_runs_on_schedule_and_on_demand_with_least_permissions_per_job() -> None:
    doc = github_workflow(options(cron="*/30 5 * * 1-5"))
    assert doc["on"]["schedule"] == [{"cron": "*/30 5 * * 1-5"}]
    assert "workflow_dispatch" in doc["on"]
    assert doc["permissions"] == {}
    jobs = doc["jobs"]
    assert list(jobs) == ["detect", "build", "propose"]
    assert jobs["detect"]["permissions"] == {"contents": "read", "id-token": "write"}
    assert jobs["build"]["permissions"] == {"contents": "read", "id-token": "write"}
    # the job that writes to the repository never holds AWS credentials, and the AWS jobs cannot write
    assert jobs["propose"]["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert uses(jobs["propose"], "aws-actions/configure-aws-credentials") == []
    for name in ("detect", "build"):
        (aws,) = uses(jobs[name], "aws-actions/configure-aws-credentials")
        assert aws["with"]["role-to-assume"] == "${{ vars.IMAGEFACTORY_ROLE_ARN }}"
        assert aws["with"]["aws-region"] == "us-west-2"
        assert not {k for k in aws["with"] if "key" in k or "secret" in k}
    for step in (s for job in jobs.values() for s in steps(job)):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False


def test_the_detect_jobs_stale_images_are_the_build_matrix() -> None:
    jobs = github_workflow(options(max_parallel=4))["jobs"]
    assert [s["run"] for s in steps(jobs["detect"]) if s["name"] == "imagefactory stale"] == [
        'imagefactory stale --json > "$STALE_REPORT"']
    assert jobs["detect"]["outputs"]["images"] == "${{ steps.stale.outputs.images }}"
    build = jobs["build"]
    assert build["needs"] == "detect"
    assert build["strategy"]["matrix"]["image"] == "${{ fromJSON(needs.detect.outputs.images) }}"
    assert build["strategy"]["fail-fast"] is False
    assert build["strategy"]["max-parallel"] == 4
    assert build["concurrency"] == {"group": "imagefactory-rebuild-${{ matrix.image }}", "cancel-in-progress": False}
    (rebuild,) = [s for s in steps(build) if "imagefactory rebuild" in s.get("run", "")]
    assert rebuild["env"] == {"IMAGE": "${{ matrix.image }}"}
    assert rebuild["run"] == 'imagefactory rebuild "$IMAGE"'
    (packer,) = uses(build, "hashicorp/setup-packer")
    assert packer["with"]["version"] == TESTED_VERSION
    (proposal,) = uses(jobs["propose"], "peter-evans/create-pull-request")
    assert proposal["with"]["add-paths"] == "catalog.yaml"
    assert proposal["with"]["branch"] == "imagefactory/rebuild-${{ matrix.image }}"


def test_the_matrix_step_turns_the_stale_report_into_job_outputs_and_a_summary(tmp_path: Path) -> None:
    detect = github_workflow(options())["jobs"]["detect"]
    (report_step,) = [s for s in steps(detect) if s["name"] == "imagefactory stale"]
    assert report_step["run"] == 'imagefactory stale --json > "$STALE_REPORT"'
    (step,) = [s for s in steps(detect) if s.get("id") == "stale"]
    assert report_step["env"] == {"STALE_REPORT": "${{ runner.temp }}/stale.json"}
    assert step["env"] == {**report_step["env"], "REQUESTED": "${{ inputs.images }}"}
    report = {"stale": ["alpha", "gamma"], "images": [
        {"name": "alpha", "latest": "20261201-0600-aaaa", "status": "stale", "incremental": True,
         "reasons": ["commit moved: 1a2b3c4 -> 5d6e7f8"], "unknown": []},
        {"name": "beta", "latest": "20261201-0600-bbbb", "status": "fresh", "incremental": False, "reasons": [],
         "unknown": []},
        {"name": "gamma", "latest": None, "status": "stale", "incremental": False,
         "reasons": [{"kind": "failed", "detail": "last build failed | interrupted"}], "unknown": ["base image"]},
    ]}
    (tmp_path / "stale.json").write_text(json.dumps(report))
    output, summary = tmp_path / "output", tmp_path / "summary"
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary),
           "STALE_REPORT": step["env"]["STALE_REPORT"].replace("${{ runner.temp }}", str(tmp_path))}

    def matrix(requested: str) -> subprocess.CompletedProcess[str]:   # `inputs.images` is "" on a schedule
        output.unlink(missing_ok=True)
        summary.unlink(missing_ok=True)
        return subprocess.run(["bash", "-e", "-c", step["run"]], env={**env, "REQUESTED": requested},
                              capture_output=True, text=True, timeout=60)

    named = matrix("beta, alpha beta")
    assert named.returncode == 0, named.stderr
    assert output.read_text() == 'images=["beta", "alpha"]\ncount=2\n'
    stray = matrix("beta delta")
    assert stray.returncode == 1 and not output.exists()
    assert stray.stderr.strip() == "error: not in the catalog: delta (its images: alpha, beta, gamma)"
    done = matrix("")
    assert done.returncode == 0, done.stderr
    assert output.read_text() == 'images=["alpha", "gamma"]\ncount=2\n'
    rows = summary.read_text().splitlines()
    assert rows[2] == "| alpha | 20261201-0600-aaaa | stale | commit moved: 1a2b3c4 -> 5d6e7f8 | - |"
    assert rows[3] == "| beta | 20261201-0600-bbbb | fresh | - | - |"
    assert rows[4] == ('| gamma | - | stale | {"detail": "last build failed \\| interrupted", "kind": "failed"} '
                       '| base image |')


def test_the_tested_packer_version_is_the_one_the_tests_run() -> None:
    assert find_packer().caps.text == TESTED_VERSION


def test_every_action_is_pinned_to_a_commit_sha_with_its_tag_beside_it() -> None:
    text = workflow_text(options())
    lines = [line for line in text.splitlines() if line.strip().startswith("uses:")]
    assert len(lines) == 11
    for line in lines:
        assert re.fullmatch(r"\s*uses: [\w.-]+/[\w.-]+@[0-9a-f]{40}  # v\d+\.\d+\.\d+\b.*", line), line
    assert {a.repo for a in ACTIONS} == {re.search(r"uses: ([^@]+)@", line)[1] for line in lines}
    assert f"{SETUP_PACKER.uses}  # {SETUP_PACKER.tag}" in text


def test_no_expression_inside_a_run_step_and_no_secret_anywhere() -> None:
    text = workflow_text(options(role_arn=ROLE))
    doc = YAML(typ="safe").load(text)
    runs = [s["run"] for job in doc["jobs"].values() for s in job["steps"] if "run" in s]
    assert len(runs) == 5
    assert all("${{" not in run for run in runs)
    assert "secrets." not in text
    assert text.count(ROLE) == 3   # the header comment and the two credential steps
    assert "60 DAYS WITHOUT ACTIVITY" in text and "gh workflow enable" in text


@pytest.mark.parametrize("cron", ["*/15 * * * *", "0 6 1,15 jan-jun mon-fri", "30 2 * * SUN", "0 0-23/2 * * *"])
def test_user_values_reach_the_yaml_as_data(cron: str) -> None:
    role = "arn:aws:iam::123456789012:role/team/a+b=c,d.e@f-g"
    doc = YAML(typ="safe").load(workflow_text(options(cron=check_cron(cron), role_arn=check_role_arn(role),
                                                      install="imagefactory @ https://example.org/x.whl")))
    assert doc["on"]["schedule"][0]["cron"] == cron
    assert {s["with"]["role-to-assume"] for job in doc["jobs"].values() for s in job["steps"]
            if s.get("uses", "").startswith("aws-actions/")} == {role}
    assert {s["env"]["IMAGEFACTORY_INSTALL"] for job in doc["jobs"].values() for s in job["steps"]
            if "IMAGEFACTORY_INSTALL" in s.get("env", {})} == {"imagefactory @ https://example.org/x.whl"}


@pytest.mark.parametrize(("cron", "says"), [
    ("0 6 * *", "has 4 fields, not 5"), ("0 6 * * 1 2", "has 6 fields"), ("60 6 * * 1", "minute '60' is outside"),
    ("0 24 * * 1", "hour '24' is outside 0-23"), ("0 6 0 * 1", "day of month '0'"), ("0 6 * 13 1", "month '13'"),
    ("0 6 * * 7", "day of week '7'"), ("0 6 * * 5-1", "runs backwards"), ("*/0 6 * * 1", "a step of 0"),
    ("0 6 * * mon;reboot", "is not a number"), ("0 6 * * mon-xyz", "holds 'xyz'"), ("@weekly", "has 1 fields"),
    ("0 6 * * 1\n", "holds a newline"), ("0 6 * * 1\n* * * * * evil", "holds a newline"),
])
def test_a_bad_cron_is_one_line_naming_the_field(cron: str, says: str) -> None:
    with pytest.raises(UsageError, match=re.escape(says)):
        check_cron(cron)


@pytest.mark.parametrize("arn", ["arn:aws:iam::12345:role/x", "arn:aws:iam::123456789012:user/x",
                                 "arn:aws:iam::123456789012:role/", "arn:aws:iam::123456789012:role/a b",
                                 "arn:aws:iam::123456789012:role/x\n", "AKIAIOSFODNN7EXAMPLE",
                                 "arn:aws:sts::123456789012:assumed-role/x/y", "arn:aws:iam::123456789012:role/${{x}}",
                                 "arn:aws:iam::123456789012:role/caf\u00e9"])
def test_a_bad_role_arn_is_refused(arn: str) -> None:
    with pytest.raises(UsageError, match="is not an IAM role ARN"):
        check_role_arn(arn)


def test_role_arns_of_every_partition_and_with_paths_are_taken() -> None:
    for arn in (ROLE, "arn:aws-us-gov:iam::123456789012:role/ci/rebuild", "arn:aws-cn:iam::123456789012:role/x"):
        assert check_role_arn(arn) == arn


def test_install_is_this_repository_or_one_requirement() -> None:
    assert check_install(".") == "."
    assert check_install("imagefactory==0.1.0") == "imagefactory==0.1.0"
    for bad in ("$(curl evil)", "imagefactory; rm -rf /", "-e ."):
        with pytest.raises(UsageError, match="is not a pip requirement"):
            check_install(bad)


def test_crontab_line_quotes_paths_and_refuses_what_cron_would_change() -> None:
    lab = LabSchedule(Path("/srv/lab o'factory"), Path("/opt/if/bin/imagefactory"))
    line = crontab_line("0 6 * * 1", lab)
    assert line.split()[:5] == ["0", "6", "*", "*", "1"]
    assert "cd '/srv/lab o'\"'\"'factory' &&" in line
    assert line.endswith("flock -n .builds/rebuild.lock /opt/if/bin/imagefactory rebuild --stale "
                         ">> .builds/rebuild.log 2>&1")
    with pytest.raises(UsageError, match="crontab line turns into a newline"):
        crontab_line("0 6 * * 1", LabSchedule(Path("/srv/100%"), Path("/opt/if/bin/imagefactory")))
    with pytest.raises(UsageError, match="printable characters"):
        crontab_line("0 6 * * 1", LabSchedule(Path("/srv/a\nb"), Path("/opt/if/bin/imagefactory")))


def test_a_calendar_with_unit_file_syntax_in_it_is_refused() -> None:
    assert check_calendar("Mon  *-*-* 06:00") == "Mon *-*-* 06:00"
    for bad in ("Mon\nExecStart=/bin/sh", "daily; rm", "%h", ""):
        with pytest.raises(UsageError, match="not a systemd calendar expression"):
            check_calendar(bad)


# -- the command line and the tools that judge its files --------------------------------------------------

def test_written_workflow_passes_githubs_schema_and_zizmor_at_its_strictest(home: Home) -> None:
    run_cli(home, "schedule.github", "--role-arn", ROLE, "--regions", "eu-west-1,us-east-2", "--max-parallel", "5",
            "--cron", "15 4 * * 0", check=True)
    workflow = home.root / WORKFLOW_PATH
    other = home.root.parent / "by-variable" / WORKFLOW_PATH   # the role from the repository variable
    run_cli(new_home(other.parents[2]), "schedule.github", check=True)
    for path in (workflow, other):
        schema = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                                 str(path)], capture_output=True, text=True)
        assert schema.returncode == 0, schema.stdout + schema.stderr
        audit = subprocess.run([str(BIN / "zizmor"), "--offline", "--persona", "auditor", "--format", "json",
                                "--no-progress", str(path)], capture_output=True, text=True)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert json.loads(audit.stdout) == []
    doc = YAML(typ="safe").load(workflow.read_text())
    assert doc["jobs"]["build"]["strategy"]["max-parallel"] == 5
    assert doc["on"]["schedule"] == [{"cron": "15 4 * * 0"}]


def test_workflow_is_never_written_over_without_force(home: Home) -> None:
    first = run_cli(home, "schedule.github", "--role-arn", ROLE, "--json", check=True)
    assert json.loads(first.stdout)["workflow"]["status"] == "written"
    assert json.loads(first.stdout)["install"] == f"imagefactory=={__version__}"
    path = home.root / WORKFLOW_PATH
    before = path.read_text()
    again = run_cli(home, "schedule.github", "--role-arn", ROLE, check=True)
    assert again.stdout.strip() == f"{path}: unchanged"
    other = "arn:aws:iam::210987654321:role/other"
    refused = run_cli(home, "schedule.github", "--role-arn", other)
    assert refused.returncode == 1
    assert f"-          role-to-assume: {ROLE}" in refused.stdout
    assert f"+          role-to-assume: {other}" in refused.stdout
    assert refused.stderr.strip().splitlines()[-1] == (
        f"error: {path} exists and differs (the diff is above); nothing was changed there (pass --force to "
        "replace it)")
    assert path.read_text() == before
    forced = run_cli(home, "schedule.github", "--role-arn", other, "--force", check=True)
    assert f"{path}: written" in forced.stdout
    assert other in path.read_text() and ROLE not in path.read_text()


@pytest.mark.parametrize(("args", "says"), [
    (["--cron", "0 6 * *"], "error: --cron '0 6 * *' has 4 fields, not 5"),
    (["--cron", "0 25 * * 1"], "error: --cron '0 25 * * 1': hour '25' is outside 0-23"),
    (["--role-arn", "arn:aws:iam::1234:role/x"], "error: --role-arn 'arn:aws:iam::1234:role/x' is not an IAM role"),
    (["--regions", "us-west-2,mars-north-1"], "error: unknown region 'mars-north-1'"),
    (["--max-parallel", "0"], "error: --max-parallel 0 is out of range"),
    (["--install", "x; rm"], "error: --install 'x; rm' is not a pip requirement"),
])
def test_bad_options_are_one_line_and_write_nothing(home: Home, args: list[str], says: str) -> None:
    done = run_cli(home, "schedule.github", *args)
    assert done.returncode == 1
    assert done.stderr.startswith(says), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (home.root / ".github").exists()


@pytest.fixture
def odd_home(tmp_path: Path) -> Any:
    """A home whose path holds a space, a quote, `$` and `%` (what shells and unit files treat specially)."""
    h = new_home(tmp_path / "lab o'factory $HOME %i")
    yield h
    stop_emulator(h)


def test_the_crontab_line_runs_in_the_home_logs_and_skips_while_a_run_holds_the_lock(tmp_path: Path) -> None:
    h = new_home(tmp_path / "lab o'factory $HOME")
    try:
        line = run_cli(h, "schedule.cron", "--cron", "*/10 * * * *", check=True).stdout.strip()
        fields = line.split(" ", 5)
        assert fields[:5] == ["*/10", "*", "*", "*", "*"]
        command = fields[5]
        lock = h.root / ".builds" / "rebuild.lock"
        lock.parent.mkdir()
        with lock.open("w") as held:     # a rebuild still running: the next one exits at once, logs nothing
            fcntl.flock(held, fcntl.LOCK_EX)
            busy = subprocess.run(["sh", "-c", command], cwd=tmp_path, env=cli_env(h), capture_output=True,
                                  text=True, timeout=60)
        assert busy.returncode == 1
        assert (h.root / ".builds" / "rebuild.log").read_text() == ""
        subprocess.run(["sh", "-c", command], cwd=tmp_path, env=cli_env(h), capture_output=True, text=True,
                       timeout=600)
        log = (h.root / ".builds" / "rebuild.log").read_text()
        assert "Traceback" not in log and log.strip()   # the program ran in the home and wrote there
    finally:
        stop_emulator(h)


def test_systemd_units_pass_systemd_analyze_verify(odd_home: Home, tmp_path: Path) -> None:
    units = tmp_path / "units"
    done = run_cli(odd_home, "schedule.cron", "--systemd", "--at", "Sat *-*-* 03:30", "--unit-dir", str(units),
                   check=True)
    service, timer = units / "imagefactory-rebuild.service", units / "imagefactory-rebuild.timer"
    assert done.stdout.splitlines() == [f"{service}: written", f"{timer}: written"]
    assert "journalctl --user -u imagefactory-rebuild.service" in done.stderr
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze (systemd) is part of the machine this factory is tested on"
    verify = subprocess.run([analyze, "verify", str(service), str(timer)], capture_output=True, text=True)
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    text = service.read_text()
    assert f"WorkingDirectory={str(odd_home.root).replace('%', '%%')}\n" in text
    assert f'ExecStart="{BIN / "imagefactory"}" rebuild --stale\n' in text
    assert "OnCalendar=Sat *-*-* 03:30\n" in timer.read_text()
    refused = run_cli(odd_home, "schedule.cron", "--systemd", "--unit-dir", str(units))
    assert refused.returncode == 1 and "+OnCalendar=Mon *-*-* 06:00:00" in refused.stdout
    assert "OnCalendar=Sat *-*-* 03:30\n" in timer.read_text()


@pytest.mark.parametrize(("args", "says"), [
    (["--systemd", "--at", "Mon *-*-* 26:00"], "error: --at 'Mon *-*-* 26:00' is not a systemd calendar expression"),
    (["--at", "Mon *-*-* 06:00"], "error: --at is the systemd timer's calendar"),
    (["--systemd", "--cron", "0 6 * * 1"], "error: --cron is the crontab line's schedule"),
    (["--cron", "0 6 * * 8"], "error: --cron '0 6 * * 8': day of week '8' is outside 0-6"),
])
def test_bad_lab_options_are_one_line(home: Home, tmp_path: Path, args: list[str], says: str) -> None:
    done = run_cli(home, "schedule.cron", "--unit-dir", str(tmp_path / "units"), *args)
    assert done.returncode == 1
    assert done.stderr.startswith(says), done.stderr
    assert not (tmp_path / "units").exists()


def test_regions_default_to_the_ones_the_recipes_bake_in(home: Home, make_repo: MakeRepo) -> None:
    for name, regions in (("one", "eu-west-1\n    - us-east-2"), ("two", "us-east-2\n    - ap-south-1")):
        repo = make_repo({"requirements.txt": "numpy\n"}, name=name)
        run_cli(home, "recipe", "--repo", repo.as_uri(), check=True, IMAGEFACTORY_OFFLINE="1")
        path = home.recipe_path(name)
        path.write_text(path.read_text().replace("us-west-2\n    - us-east-2", regions, 1))
    (home.root / "pyproject.toml").write_text('[project]\nname = "imagefactory"\n')   # the factory's own tree
    data = json.loads(run_cli(home, "schedule.github", "--json", check=True).stdout)
    assert data["regions"] == ["eu-west-1", "us-east-2", "ap-south-1"]
    assert data["install"] == "."
    doc = YAML(typ="safe").load((home.root / WORKFLOW_PATH).read_text())
    assert {s["with"]["aws-region"] for s in doc["jobs"]["build"]["steps"] if "aws-region" in s.get("with", {})} == {
        "eu-west-1"}
