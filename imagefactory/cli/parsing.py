"""How a task's command line is parsed and its help shown: every task also knows `--help`/`-h`, so
`invoke bake --help` asks for bake's help instead of baking a repo named "--help".

invoke's parser gives the next word to a task's missing positional argument before it looks for core
flags. `with_help_flag` gives each task its own `--help` flag, which the parser matches first, and makes
its positional arguments count as given once help is asked, so parsing completes; the task's edge
(`imagefactory.cli.edge`) then prints `help_page` instead of running it.
"""

from __future__ import annotations

import inspect
import shutil
import textwrap
from typing import Any

from invoke.parser import Argument, ParserContext

HELP = "help"


class _Positional(Argument):
    """A positional argument that is not needed when its task's help is asked, or when an option standing
    in for it is given (`launch --ami AMI` needs no image name)."""

    def __init__(self, asked: Argument, instead: Argument | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asked = asked
        self.instead = instead

    @property
    def value(self) -> Any:
        if self._value is None and (self.asked.value or (self.instead is not None and self.instead.value)):
            return ""
        return super().value

    @value.setter
    def value(self, arg: Any) -> None:
        self.set_value(arg, cast=True)


def with_help_flag(args: list[Argument], instead: dict[str, str] | None = None) -> list[Argument]:
    """A task's arguments plus its own --help (and -h, unless a task option took it). `instead` maps a
    positional argument to the option that makes it unneeded when given."""
    taken = {name for arg in args for name in arg.names}
    asked = Argument(names=tuple(n for n in (HELP, "h") if n not in taken), kind=bool, default=False,
                     help="Show this task's help and exit")
    by_name = {a.name: a for a in args}
    return [_Positional(asked, by_name.get((instead or {}).get(a.name, "")), names=a.names, kind=a.kind,
                        default=a.default, help=a.help, positional=True, optional=a.optional,
                        attr_name=a.attr_name) if a.positional else a
            for a in args] + [asked]


def help_page(binary: str, name: str, body: Any, args: list[Argument]) -> str:
    """A task's help page, laid out as `invoke --help TASK` lays it out."""
    rows = ParserContext(name=name, args=args).help_tuples()
    lines = [f"Usage: {binary} [--core-opts] {name} {'[--options] ' if rows else ''}[other tasks here ...]", "",
             "Docstring:", *("  " + line for line in (inspect.getdoc(body) or "none").splitlines()), "",
             "Options:"]
    width = max((len(spec) for spec, _ in rows), default=0)
    wrap = max(20, shutil.get_terminal_size((80, 24)).columns - width - 5)
    for spec, text in rows:
        chunks = textwrap.wrap(text or "", wrap) or [""]
        lines.append(f"  {spec.ljust(width)}  {chunks[0]}".rstrip())
        lines += [" " * (width + 4) + chunk for chunk in chunks[1:]]
    return "\n".join([*lines, ""])
