"""Launch options checked before anything is made (pure): the ssh source network above all."""

from __future__ import annotations

import pytest

from imagefactory.cloud.access import check_cidr
from imagefactory.errors import CloudError
from imagefactory.launch_plan import LaunchOptions, check_options


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
