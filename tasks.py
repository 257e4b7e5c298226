"""invoke entry point: the factory's tasks live in imagefactory.tasks (run `invoke --list`)."""

from imagefactory.tasks import ns

__all__ = ["ns"]
