"""Every user-facing failure: one class each, a one-line message and a hint on how to fix it.

The command line's edge (`imagefactory.cli.edge`) turns a FactoryError into `error: <message> (<hint>)`
on one line and exit code 1, never a traceback; `Cancelled` (Ctrl-C, SIGTERM, SIGHUP) into 128 + the
signal's number. Anything else escaping is a bug.
"""

from __future__ import annotations

import signal


class FactoryError(Exception):
    """A failure the user can act on. `message` names the file/field/thing; `hint` says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class RepoError(FactoryError):
    """A repository spec that cannot be resolved, cloned or checked out."""


class RecipeError(FactoryError):
    """A recipe or environment file that is malformed or invalid (names file, line or field)."""


class ResolveError(FactoryError):
    """The recipe's packages do not resolve for the chosen Python and platform."""


class RenderError(FactoryError):
    """A value that cannot safely reach a Packer template (e.g. holds a Go template `{{`)."""


class PackerError(FactoryError):
    """Packer is missing, too old, or a validate/build run failed."""


class CloudError(FactoryError):
    """An AWS (or emulator) call failed or the target cannot be used (unknown region, no credentials)."""


class SandboxError(FactoryError):
    """The embedded sandbox (EC2 emulator, local rootfs) cannot start or is in a bad state."""


class CatalogError(FactoryError):
    """catalog.yaml is malformed, of an unknown version, or has no such image/build."""


class BakeInterrupted(FactoryError):
    """The user pressed Ctrl-C during a bake; cleanup ran and the catalog holds a failed build."""


class HomeNotFound(FactoryError):
    """No factory home: $IMAGEFACTORY_HOME is unset and no folder from the cwd upwards holds catalog.yaml."""


class UsageError(FactoryError):
    """A command-line option with a value it cannot take (names the option and its range)."""


class Cancelled(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived: a KeyboardInterrupt, so every Ctrl-C clean-up path runs for all three."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


class ClassError(FactoryError):
    """A class roster that is malformed, or a share/unshare that cannot be done (names file, field, fix)."""
