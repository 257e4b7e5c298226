"""Base images a recipe can name, as AWS publishes them (Canonical's owner id and name patterns)."""

from __future__ import annotations

from dataclasses import dataclass

CANONICAL = "099720109477"


@dataclass(frozen=True)
class Base:
    key: str
    name_filter: str
    owner: str
    login_user: str


BASES: dict[str, Base] = {
    "ubuntu-22.04": Base("ubuntu-22.04", "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*", CANONICAL,
                         "ubuntu"),
    "ubuntu-24.04": Base("ubuntu-24.04", "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*", CANONICAL,
                         "ubuntu"),
}
