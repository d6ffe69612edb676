"""A setting declared once: its help text, its range or choices, its CLI flag and its Launch-page label.

RunConfig's fields carry a `Setting` in their metadata and each objective plugin declares its own options as
`Option`s (a name, a type, a default and a Setting); the CLI's flags, the Launch page's fields, the README's
objectives table and RunConfig.validate all read them from here, so a range is written once.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import Field, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Setting:
    """What a front end needs to offer one setting and what validation needs to refuse a value."""

    help: str
    least: float | None = None  # the smallest value allowed ...
    most: float | None = None  # ... and the largest
    above: bool = False  # `least` itself is not allowed
    below: bool = False  # `most` itself is not allowed
    choices: tuple[str, ...] = ()
    empty: bool = False  # None is allowed: no limit ('all' on the CLI, an empty field in the app)
    unset: str = "no limit"  # what None means, in messages
    hint: str = ""  # what to try, added to the message, e.g. "try 8"
    what: str = ""  # how messages name it (default: the field name)
    label: str = ""  # the Launch page's label
    flag: str | None = None  # the CLI flag (default --name-with-dashes); "" for none
    check: Callable[[Any], str | None] | None = None  # a check of its own: the reason a value is refused, or None
    parse: Callable[[str], Any] | None = None  # how a flag's text is read (default: as the default's type)

    def bound(self, number: Callable[[float], str] = lambda value: f"{value:g}" if isinstance(value, float)
              else str(value)) -> str:
        """The range in words, e.g. 'between 1 and 1024', 'in [0, 1)', 'at least 10', 'above 0'."""
        if self.least is not None and self.most is not None:
            if self.above or self.below:
                return (f"in {'(' if self.above else '['}{number(self.least)}, {number(self.most)}"
                        f"{')' if self.below else ']'}")
            return f"between {number(self.least)} and {number(self.most)}"
        if self.least is not None:
            return f"{'above' if self.above else 'at least'} {number(self.least)}"
        return f"{'below' if self.below else 'at most'} {number(self.most)}"

    def fits(self, value: float) -> bool:
        """Whether a number is inside the range (NaN and infinities never are)."""
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.least is not None and not (value > self.least if self.above else value >= self.least):
            return False
        if self.most is not None and not (value < self.most if self.below else value <= self.most):
            return False
        return True

    def problem(self, name: str, value: Any) -> str | None:
        """Why `value` cannot be used for the setting `name`, in words that say what to give; None if it can."""
        what = self.what or name
        if value is None:
            return None if self.empty else f"{what} must be given"
        if self.choices and value not in self.choices:
            use = " or ".join(self.choices) if len(self.choices) <= 2 else f"one of {', '.join(self.choices)}"
            return f"{what} '{value}' is unknown (use {use})"
        if (self.least is not None or self.most is not None) and not self.fits(value):
            extra = [text for text in (self.hint, f"or empty for {self.unset}" if self.empty else "") if text]
            return f"{what} must be {self.bound()}" + (f" ({'; '.join(extra)})" if extra else "")
        return self.check(value) if self.check else None


def setting(default: Any = None, *, factory: Callable[[], Any] | None = None, **declared) -> Field:
    """A RunConfig field with its Setting (keywords as Setting's)."""
    metadata = {"setting": Setting(**declared)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Option:
    """A setting only one objective reads, declared by its plugin; RunConfig gets a field of this name."""

    name: str
    kind: type  # int, float, bool or str
    default: Any
    setting: Setting

    def field(self) -> tuple[str, type, Field]:
        """The (name, type, field) make_dataclass takes."""
        return self.name, self.kind, field(default=self.default, metadata={"setting": self.setting})


def option(name: str, kind: type, default: Any, **declared) -> Option:
    """An objective's own option (keywords as Setting's)."""
    return Option(name, kind, default, Setting(**declared))
