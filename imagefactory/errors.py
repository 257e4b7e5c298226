"""Every user-facing failure: one class each, a one-line message and a hint on how to fix it.

The task boundary (`imagefactory.tasks`) turns a FactoryError into `invoke.Exit` with exit code 1 and
no traceback. Anything else escaping is a bug.
"""

from __future__ import annotations


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
