"""End to end: the real CLI, the real Packer, the real emulator, git repos made in temp dirs.

These test the pipeline's mechanics (resolution, recipes, rendering, Packer, tags, catalog, failures), so
they bake with --api-only: the AMIs are registered without provisioning. Real provisioning of the
bundled example is tested in test_bake_provision.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import MakeRepo, cli_env, git, interrupt_at, run_cli

from imagefactory import catalog
from imagefactory.bake_failure import Cleanup, unwrap, what_happened
from imagefactory.errors import SandboxError
from imagefactory.home import Home
from imagefactory.packer import BuildOutcome, PackerCancelled
from imagefactory.sandbox.emulator import status

THREE = "us-west-2,us-east-2,eu-west-1"
REQUIRED_TAGS = ("Name", "imagefactory:image", "imagefactory:repo", "imagefactory:commit",
                 "imagefactory:recipe-digest", "imagefactory:build-id", "imagefactory:factory-version")


def ec2(h: Home, region: str) -> Any:
    info = status(h.emulator_dir)
    assert info is not None, "the emulator should be running after a bake"
    return boto3.client("ec2", region_name=region, endpoint_url=info.endpoint, aws_access_key_id="x",
                        aws_secret_access_key="x")


def builds_of(h: Home, name: str) -> list[catalog.Build]:
    cat = catalog.load(h.catalog_path("sandbox"))
    return list(cat.images[name].builds) if name in cat.images else []


def test_env_subfolder_repo_bakes_three_tagged_amis(shared_home: Home, make_repo: MakeRepo) -> None:
    repo = make_repo({"environment/requirements.txt": "six==1.16.0\n", "analysis.py": "print(1)\n"},
                     name="subfolder-env")
    done = run_cli(shared_home, "bake", "--api-only", "--repo", repo.as_uri(), "--regions", THREE, "--json",
                   check=True)
    assert done.stderr.splitlines()[0].startswith("SANDBOX:")
    result = json.loads(done.stdout)
    assert sorted(result["amis"]) == sorted(THREE.split(","))
    commit = git(repo, "rev-parse", "HEAD")
    for region, ami in result["amis"].items():
        image = ec2(shared_home, region).describe_images(ImageIds=[ami])["Images"][0]
        tags = {t["Key"]: t["Value"] for t in image["Tags"]}
        assert all(k in tags for k in REQUIRED_TAGS)
        assert tags["managed-by"] == "imagefactory"
        assert tags["imagefactory:commit"] == commit
        assert tags["imagefactory:build-id"] == result["build_id"]
    listing = json.loads(run_cli(shared_home, "catalog", "--json", check=True).stdout)
    row = next(r for r in listing if r["image"] == "subfolder-env")
    assert row["builds"] == 1 and row["target"] == "sandbox" and row["amis"] == result["amis"]
    recipe = (shared_home.recipes_dir / "subfolder-env.yaml").read_text()
    assert "environment/requirements.txt" in recipe
    (build,) = builds_of(shared_home, "subfolder-env")
    assert build.status == "available" and build.commit == commit and build.packer_version
    assert set(build.base_ami) == set(THREE.split(",")) and build.base_ami_name.startswith("ubuntu/images/")
    assert "subfolder-env" not in catalog.load(shared_home.catalog_path("aws")).images
    fmt = subprocess.run(["packer", "fmt", "-check", "."], cwd=result["build_dir"], capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout


def test_repo_without_env_files_bakes_a_default_recipe_and_says_so(shared_home: Home, make_repo: MakeRepo) -> None:
    repo = make_repo({"README.md": "nothing to install\n"}, name="bare-repo")
    done = run_cli(shared_home, "bake", "--api-only", "--repo", repo.as_uri(), check=True)
    assert "default" in done.stderr.lower()
    assert builds_of(shared_home, "bare-repo")[0].status == "available"


@pytest.mark.parametrize(("files", "expected"), [
    ({"requirements.txt": "six\nnot a valid $(requirement)\n"}, "requirements.txt:2"),
    ({"environment.yml": "name: x\ndependencies: [python=3.8\n"}, "environment.yml:"),
])
def test_malformed_env_file_is_one_line_naming_file_and_line(home: Home, make_repo: MakeRepo,
                                                             files: dict[str, str], expected: str) -> None:
    repo = make_repo(files, name="broken-env")
    done = run_cli(home, "bake", "--api-only", "--repo", repo.as_uri())
    assert done.returncode == 1
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error:") and expected in error
    assert not builds_of(home, "broken-env")


def test_unknown_region_and_missing_repo_fail_before_anything_is_built(home: Home, make_repo: MakeRepo) -> None:
    repo = make_repo({"requirements.txt": "six\n"}, name="regions")
    done = run_cli(home, "bake", "--api-only", "--repo", repo.as_uri(), "--regions", "us-west-2,mars-north-1")
    assert done.returncode == 1 and "unknown region 'mars-north-1'" in done.stderr
    done = run_cli(home, "bake", "--api-only", "--repo", "file:///does/not/exist.git")
    assert done.returncode == 1 and "cannot fetch" in done.stderr
    assert not catalog.load(home.catalog_path("sandbox")).images


def test_values_with_shell_and_hcl_syntax_cannot_inject(shared_home: Home, make_repo: MakeRepo,
                                                         tmp_path: Path) -> None:
    repo = make_repo({"requirements.txt": "six\n"}, name="inject")
    branch = "x'\"${a}%{b}$(touch${IFS}pwned)`touch${IFS}pwned2`;"
    git(repo, "branch", branch)
    done = run_cli(shared_home, "bake", "--api-only", "--repo", repo.as_uri(), "--ref", branch, "--json",
                   check=True)
    result = json.loads(done.stdout)
    image = ec2(shared_home, "us-west-2").describe_images(ImageIds=[result["amis"]["us-west-2"]])["Images"][0]
    assert {t["Key"]: t["Value"] for t in image["Tags"]}["imagefactory:ref"] == branch
    assert not list(shared_home.root.rglob("pwned*")) and not list(Path.cwd().glob("pwned*"))


def test_go_template_braces_are_refused_before_packer(shared_home: Home, make_repo: MakeRepo) -> None:
    repo = make_repo({"requirements.txt": "six\n"}, name="braces")
    git(repo, "branch", "feature-{{.Env}}")
    done = run_cli(shared_home, "bake", "--api-only", "--repo", repo.as_uri(), "--ref", "feature-{{.Env}}")
    assert done.returncode == 1 and "Go template" in done.stderr


def test_packer_failure_records_a_failed_build_and_shows_the_log(home: Home, make_repo: MakeRepo) -> None:
    repo = make_repo({"requirements.txt": "six\n"}, name="doomed")
    run_cli(home, "sandbox.up", check=True)
    for region in ("us-west-2", "us-east-2"):  # no base image -> Packer's source_ami_filter fails for real
        client = ec2(home, region)
        for image in client.describe_images(Owners=["099720109477"])["Images"]:
            client.deregister_image(ImageId=image["ImageId"])
    done = run_cli(home, "bake", "--api-only", "--repo", repo.as_uri())
    assert done.returncode == 1
    assert "packer build failed" in done.stderr and "packer.log" in done.stderr
    (build,) = builds_of(home, "doomed")
    assert build.status == "failed" and build.error and not build.amis
    assert catalog.load(home.catalog_path("sandbox")).images["doomed"].latest is None


def test_ctrl_c_cancels_packer_cleans_up_and_records_interrupted(home: Home, make_repo: MakeRepo) -> None:
    repo = make_repo({"requirements.txt": "six\n"}, name="cancelled")
    run_cli(home, "sandbox.up", check=True)
    argv = [sys.executable, "-c", "from imagefactory.main import program; program.run()", "bake", "--api-only",
            "--repo", repo.as_uri()]
    env = cli_env(home, AWS_POLL_DELAY_SECONDS="2")  # slow Packer's waits so the interrupt lands mid-build
    code, output = interrupt_at(argv, home.root, env, "Launching a source AWS instance")
    assert code == 130, output
    (build,) = builds_of(home, "cancelled")
    assert build.status == "interrupted" and not build.amis
    client = ec2(home, "us-west-2")
    leftovers = client.describe_images(Owners=["self"], Filters=[
        {"Name": "tag:imagefactory:build-id", "Values": [build.id]}])["Images"]
    assert leftovers == []
    reservations = client.describe_instances(Filters=[
        {"Name": "tag:imagefactory:build-id", "Values": [build.id]}])["Reservations"]
    states = {i["State"]["Name"] for r in reservations for i in r["Instances"]}
    assert states <= {"terminated", "shutting-down"}


def test_concurrent_bakes_of_different_images_all_land(shared_home: Home, make_repo: MakeRepo) -> None:
    repos = [make_repo({"requirements.txt": "six\n"}, name=f"parallel-{i}") for i in range(3)]
    argv = [sys.executable, "-c", "from imagefactory.main import program; program.run()", "bake", "--api-only",
            "--repo"]
    procs = [subprocess.Popen([*argv, r.as_uri()], cwd=shared_home.root, env=cli_env(shared_home),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in repos]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    cat = catalog.load(shared_home.catalog_path("sandbox"))
    for i in range(3):
        assert cat.images[f"parallel-{i}"].latest_build().status == "available"


def test_emulator_restart_keeps_every_catalogued_ami(home: Home, make_repo: MakeRepo) -> None:
    repo = make_repo({"requirements.txt": "six\n"}, name="survivor")
    result = json.loads(run_cli(home, "bake", "--api-only", "--repo", repo.as_uri(), "--json", check=True).stdout)
    run_cli(home, "sandbox.down", check=True)
    assert "not running" in run_cli(home, "sandbox.status", check=True).stdout
    run_cli(home, "sandbox.up", check=True)
    for region, ami in result["amis"].items():
        image = ec2(home, region).describe_images(ImageIds=[ami])["Images"][0]
        assert {t["Key"]: t["Value"] for t in image["Tags"]}["imagefactory:build-id"] == result["build_id"]


def test_bundled_example_bakes_and_catalog_show_prints_it(shared_home: Home) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "hello-binder"
    run_cli(shared_home, "bake", "--api-only", "--repo", str(example), check=True)
    shown = run_cli(shared_home, "catalog.show", "hello-binder", check=True).stdout
    assert "dir-sha256:" in shown and "available" in shown
    missing = run_cli(shared_home, "catalog.show", "nope")
    assert missing.returncode == 1 and "hello-binder" in missing.stderr


def test_invoke_list_shows_every_task_with_help() -> None:
    root = Path(__file__).resolve().parent.parent
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=root, capture_output=True, text=True,
                         check=True).stdout
    assert time.perf_counter() - started < 10
    for name in ("bake", "catalog.list", "catalog.show", "sandbox.up", "sandbox.status", "sandbox.down"):
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(name))
        assert len(line.split()) > 1, f"{name} has no help"


@pytest.mark.parametrize("command", ["bake", "launch", "catalog.show", "recipe.check"])
def test_task_help_after_the_task_name_shows_help(command: str) -> None:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "invoke", command, "--help"], cwd=root, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and f"invoke [--core-opts] {command}" in done.stdout and "Options:" in done.stdout
    assert "SANDBOX" not in done.stderr, "asking for help must not start the emulator"


# ------------------------------------------------------------------------ what a failed bake records

class Terminated(KeyboardInterrupt):
    """What the CLI raises for SIGTERM: a KeyboardInterrupt subclass naming its signal."""

    signum = signal.SIGTERM


def cancelled(step: str | None = None, created: tuple[str, ...] = (), killed: bool = False) -> PackerCancelled:
    outcome = BuildOutcome(ok=False, created=list(created), last_step=step, killed=killed)
    return PackerCancelled(outcome, KeyboardInterrupt())


def test_a_cancel_before_any_ami_says_so() -> None:
    cause, outcome = unwrap(cancelled("Provisioning with shell script: provision/scripts/60-post-build.sh"))
    assert what_happened(cause, outcome, stage="build", cleanup=Cleanup()) == (
        "interrupted", "cancelled by Ctrl-C during Packer's step 'Provisioning with shell script: "
                       "provision/scripts/60-post-build.sh'; no AMI had been created (none of this build exists)")


def test_a_cancel_after_amis_existed_names_what_the_sweep_removed() -> None:
    cause, outcome = unwrap(cancelled("Creating AMI tags", created=("ami-1",)))
    status, message = what_happened(cause, outcome, stage="build",
                                    cleanup=Cleanup(removed=("us-west-2:ami-1", "us-east-2:ami-2")))
    assert status == "interrupted"
    assert message.endswith("AMIs had been created: the clean-up deregistered us-west-2:ami-1, us-east-2:ami-2 "
                            "and their snapshots")
    _, message = what_happened(cause, outcome, stage="build", cleanup=Cleanup())
    assert message.endswith("Packer had created ami-1 and removed it while cancelling; no AMI of this build remains")


def test_a_signal_is_named_and_a_killed_packer_says_what_may_be_left() -> None:
    status, message = what_happened(Terminated(), None, stage="pack", cleanup=Cleanup())
    assert (status, message) == ("interrupted", "cancelled by SIGTERM during packing the sandbox image; "
                                                "no AMI had been created (none of this build exists)")
    cause, outcome = unwrap(cancelled(killed=True))
    assert "was killed: its build instance, key pair and security group (named packer_*) may be left" in (
        what_happened(cause, outcome, stage="build", cleanup=Cleanup(error="timeout"))[1])


def test_an_error_that_a_cleanup_step_raised_stands_for_the_failure_it_hid() -> None:
    emulator_gone = SandboxError("the sandbox emulator (pid 7) stopped during the build")
    try:
        try:
            raise PackerCancelled(BuildOutcome(ok=False), emulator_gone)
        finally:
            raise ConnectionError("could not delete the key pair")  # as dataplane's finally does
    except ConnectionError as exc:
        cause, outcome = unwrap(exc)
    assert cause is emulator_gone and outcome is not None
    status, message = what_happened(cause, outcome, stage="build", cleanup=Cleanup(error="the emulator is gone"))
    assert status == "failed" and message.startswith("the sandbox emulator (pid 7) stopped during the build; ")


def test_an_unreachable_endpoint_is_one_line_naming_the_emulator_or_aws(tmp_path: Path) -> None:
    from botocore.exceptions import EndpointConnectionError

    from imagefactory.bake_failure import connection_error
    from imagefactory.cloud.target import Target
    from imagefactory.errors import CloudError

    refused = EndpointConnectionError(endpoint_url="http://127.0.0.1:9/")
    sandbox = connection_error(refused, Target("sandbox", "1", "http://127.0.0.1:9"), tmp_path)
    assert isinstance(sandbox, SandboxError) and "\n" not in str(sandbox)
    assert sandbox.message.startswith("the sandbox emulator at http://127.0.0.1:9 does not answer")
    assert isinstance(connection_error(refused, Target("aws", "1"), tmp_path), CloudError)
    assert connection_error(ValueError("x"), Target("aws", "1"), tmp_path) is None
