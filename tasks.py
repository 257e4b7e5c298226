"""invoke entry point: the factory's tasks live in imagefactory.cli (run `invoke --list`)."""

from imagefactory.cli import ns

__all__ = ["ns"]
