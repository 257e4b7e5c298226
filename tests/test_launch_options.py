"""Launch options checked before anything is made (pure): the ssh source network above all."""

from __future__ import annotations

import pytest

from imagefactory.cloud.access import check_cidr
from imagefactory.errors import CloudError, UsageError
from imagefactory.launch_plan import PORT_TAG, USER_TAG, LaunchOptions, by_ami, check_options


@pytest.mark.parametrize("cidr", ["198.51.100.7/32", "198.51.100.0/24", "2001:db8::1/128", "2001:db8:0:100::/56"])
def test_a_site_or_narrower_is_accepted(cidr: str) -> None:
    assert check_cidr(cidr) == cidr
    check_options(LaunchOptions("demo", cidr=cidr))


@pytest.mark.parametrize("cidr", ["0.0.0.0/1", "10.0.0.0/8", "198.51.100.0/23", "2001:db8::/32", "2001:db8::/55"])
def test_wider_than_a_site_is_refused_and_says_why(cidr: str) -> None:
    with pytest.raises(CloudError, match=r"addresses try ssh on the instance, more than a /(24|56)") as err:
        check_options(LaunchOptions("demo", cidr=cidr))
    assert "--allow-wide-cidr" in err.value.hint


@pytest.mark.parametrize("cidr", ["0.0.0.0/1", "10.0.0.0/8", "2001:db8::/32"])
def test_allow_wide_cidr_lets_a_wide_source_through(cidr: str) -> None:
    assert check_cidr(cidr, allow_wide=True) == cidr
    check_options(LaunchOptions("demo", cidr=cidr, allow_wide_cidr=True))


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0"])
def test_the_whole_internet_is_refused_even_when_wide_is_allowed(cidr: str) -> None:
    with pytest.raises(CloudError, match="whole internet"):
        check_cidr(cidr, allow_wide=True)


def test_a_malformed_source_is_one_line() -> None:
    with pytest.raises(CloudError, match="not a network address"):
        check_cidr("198.51.100.7/33")
    with pytest.raises(CloudError, match="not a network address"):
        check_cidr("198.51.100.7/24")  # host bits set


@pytest.mark.parametrize(("opts", "expected"), [
    (LaunchOptions("", ami="ami-123", region="us-west-2"), "--ami 'ami-123' is not an AMI ID"),
    (LaunchOptions("", ami="ami-0123456789abcdef0"), "--ami ami-0123456789abcdef0 needs --region"),
    (LaunchOptions("demo", ami="ami-01234567", region="us-west-2"), "both an image name (demo) and --ami"),
    (LaunchOptions(""), "no image to launch"),
])
def test_an_ami_launch_needs_a_well_formed_id_and_its_region(opts: LaunchOptions, expected: str) -> None:
    with pytest.raises(UsageError) as err:
        check_options(opts)
    assert str(err.value).startswith(expected)


def test_an_ami_launch_reads_user_and_port_from_its_tags_else_the_contract_defaults() -> None:
    tagged = {"ImageId": "ami-01234567", "Name": "imagefactory/hydro/b1", "Tags": [
        {"Key": "imagefactory:image", "Value": "hydro"}, {"Key": "imagefactory:build-id", "Value": "b1"},
        {"Key": USER_TAG, "Value": "ec2-user"}, {"Key": PORT_TAG, "Value": "8890"}]}
    got = by_ami(tagged, "us-west-2")
    assert (got.choice.image, got.choice.build_id, got.choice.ami, got.choice.region) == (
        "hydro", "b1", "ami-01234567", "us-west-2")
    assert (got.user, got.jupyter_port, got.notes) == ("ec2-user", 8890, ())
    shared = by_ami({"ImageId": "ami-01234567", "Name": "imagefactory/hydro/b1"}, "us-west-2")  # no tags shown
    assert (shared.choice.image, shared.choice.build_id) == ("imagefactory/hydro/b1", "")
    assert (shared.user, shared.jupyter_port) == ("ubuntu", 8889)
    assert len(shared.notes) == 1 and "image contract's login user 'ubuntu' and JupyterLab port 8889" in shared.notes[0]
