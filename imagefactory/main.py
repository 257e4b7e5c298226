"""Console script `imagefactory`: the same task collection as `invoke` in the factory repo."""

from invoke import Program

from imagefactory import __version__
from imagefactory.tasks import ns

program = Program(name="imagefactory", binary="imagefactory", namespace=ns, version=__version__)
