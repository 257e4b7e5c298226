"""The `imagefactory` console script: invoke's Program over the factory's collection (whose tasks carry
the edge with them, see `imagefactory.cli.edge`), with its own name in help pages."""

from __future__ import annotations

from invoke import Program

from imagefactory import __version__
from imagefactory.cli import ns


class FactoryProgram(Program):
    def execute(self) -> None:
        self.config.imagefactory_binary = self.binary
        super().execute()


program = FactoryProgram(name="imagefactory", binary="imagefactory", namespace=ns, version=__version__)
