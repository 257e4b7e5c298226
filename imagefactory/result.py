"""What a command gives back: its data (for `--json`), the text people read, and messages — notes and
things skipped, each with its reason. The command line renders a Result once (`imagefactory.cli.common`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Message:
    """One thing a command says besides its result: a note, a warning, or an item skipped and why."""

    text: str
    kind: str = "note"   # "note" | "warning" | "skipped"

    def line(self) -> str:
        return f"{self.kind}: {self.text}"


@dataclass(frozen=True)
class Result:
    data: Any
    text: str
    messages: tuple[Message, ...] = ()

    def note(self, text: str) -> Result:
        return replace(self, messages=(*self.messages, Message(text)))

    def warning(self, text: str) -> Result:
        return replace(self, messages=(*self.messages, Message(text, "warning")))

    def skipped(self, item: str, reason: str) -> Result:
        return replace(self, messages=(*self.messages, Message(f"{item}: {reason}", "skipped")))

    def json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=True, default=str)
