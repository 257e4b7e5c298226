"""Print a small table: proof that the kernel has the repo's packages."""

from tabulate import tabulate


def table() -> str:
    return tabulate([["imagefactory", "hello"]], headers=["from", "says"])


if __name__ == "__main__":
    print(table())
