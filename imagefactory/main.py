"""Console script entry point (`[project.scripts] imagefactory = "imagefactory.main:program.run"`)."""

from imagefactory.cli.program import program

__all__ = ["program"]
