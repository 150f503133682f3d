"""Settings as frozen dataclasses, validated once when built, each bad value refused in one line naming it.

A settings class lists its fields with ``setting(...)``: the kind of value, its range or choices, and a
help line (used by the CLI and the docs). ``Settings.from_arguments`` builds one from a job's JSON
arguments and refuses unknown keys, naming the known ones. A new setting is one field.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from flamby_flare.errors import FlambyFlareError

_KINDS = ("int", "float", "bool", "str", "dict", "list")


class SettingError(FlambyFlareError, ValueError):
    """A setting has a value of the wrong type or out of its range; the message names it."""


@contextlib.contextmanager
def refused_in_one_line(logger: str):
    """A ``SettingError`` raised inside is logged at ERROR (by ``logger``) before it goes on: a job refused at
    start shows its cause as its first error line, ahead of NVFlare's traceback of the same error."""
    try:
        yield
    except SettingError as exc:
        logging.getLogger(logger).error(str(exc))
        raise


@dataclass(frozen=True)
class Check:
    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself refused (``> low`` instead of ``>= low``)
    high_open: bool = False
    choices: tuple | None = None
    optional: bool = False  # None allowed
    help: str = ""

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        noun = {
            "int": "an integer",
            "float": "a number",
            "bool": "true or false",
            "str": "a string",
            "dict": "a JSON object",
            "list": "a list",
        }[self.kind]
        return noun + (" " + " and ".join(parts) if parts else "")

    def __call__(self, name: str, value: Any, owner: str) -> Any:
        """``value`` checked (numbers as float for ``float``); a bad one raises ``SettingError``."""
        if value is None:
            if self.optional:
                return None
            raise SettingError(f"{owner}{name} is required: {self.describe()}")
        bad = SettingError(f"{owner}{name} must be {self.describe()}, got {value!r}")
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad
        elif self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise bad
            value = float(value)
        elif self.kind == "bool":
            if not isinstance(value, bool):
                raise bad
        elif self.kind == "str":
            if not isinstance(value, str) or not value:
                raise bad
        elif self.kind == "dict":
            if not isinstance(value, dict):
                raise bad
        elif self.kind == "list":
            if not isinstance(value, (list, tuple)):
                raise bad
            value = tuple(value)
        if self.choices is not None and value not in self.choices:
            raise bad
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise bad
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise bad
        return value


def setting(kind: str, default: Any = dataclasses.MISSING, *, help: str = "", **check) -> Any:
    """A settings field of ``kind`` (int, float, bool, str, dict, list) with ``default`` and its checks
    (``low``, ``high``, ``low_open``, ``high_open``, ``choices``; ``optional``: None allowed, the default
    when ``default`` is None)."""
    if kind not in _KINDS:
        raise ValueError(f"unknown setting kind {kind!r}")
    check.setdefault("optional", default is None)
    meta = {"check": Check(kind, help=help, **check)}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=meta)
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def validate(obj: Any, owner: str = "") -> None:
    """Check (and normalize) every ``setting`` field of the frozen dataclass ``obj``."""
    for f in dataclasses.fields(obj):
        check = f.metadata.get("check")
        if check is not None:
            object.__setattr__(obj, f.name, check(f.name, getattr(obj, f.name), owner))


@dataclass(frozen=True)
class Settings:
    """Base of the settings classes: fields from ``setting``, validated in ``__post_init__``."""

    owner: ClassVar[str] = ""  # prefix of the messages, e.g. "fedprox: "

    def __post_init__(self) -> None:
        validate(self, self.owner)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_arguments(cls, values: dict | None, what: str | None = None):
        """From a job's arguments: an unknown key is refused, naming the known ones; every message starts
        with ``what`` (e.g. ``controllers.FedProx``)."""
        values = dict(values or {})
        what = what or cls.owner.rstrip(": ") or cls.__name__
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise SettingError(f"{what}: unknown argument(s) {', '.join(unknown)}; known: {', '.join(cls.names())}")
        required = [
            f
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in values
        ]
        if required:
            f = required[0]
            check = f.metadata.get("check")
            raise SettingError(
                f"{what}: {f.name} is required" + (f" ({check.help})" if check is not None and check.help else "")
            )
        try:
            return cls(**values)
        except SettingError as exc:
            message = str(exc)
            raise SettingError(
                message if message.startswith(f"{what}: ") else f"{what}: {message.removeprefix(cls.owner)}"
            ) from None

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def changed(self) -> dict:
        """The fields whose value differs from their default (what a job file needs to say)."""
        out = {}
        for f in dataclasses.fields(self):
            default = (
                f.default
                if f.default is not dataclasses.MISSING
                else (f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
            )
            value = getattr(self, f.name)
            if default is dataclasses.MISSING or value != default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def add_setting_arguments(
    parser,
    cls: type[Settings],
    exclude: tuple[str, ...] = (),
    aliases: dict[str, str] | None = None,
    show_defaults: bool = True,
) -> None:
    """A ``--field-name`` option of ``parser`` (an argparse parser or group) for every field of ``cls`` but
    ``exclude``: numbers typed, booleans as flags (``--no-x`` for one true by default), JSON objects and lists parsed, help from the field (so a
    new setting is a new option). ``aliases``: field -> an older spelling still accepted."""
    for f in dataclasses.fields(cls):
        check = f.metadata.get("check")
        if f.name in exclude or check is None:
            continue
        option = "--" + f.name.replace("_", "-")
        flags = [option] + ([aliases[f.name]] if aliases and f.name in aliases else [])
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = check.help + (f" (default: {default})" if show_defaults and default not in (None, False) else "")
        if check.kind == "bool":  # a setting that defaults to true also gets its --no- form
            import argparse

            if default is True:
                text = check.help + f" (default: on; {option.replace('--', '--no-', 1)} turns it off)"
                parser.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
            else:
                parser.add_argument(*flags, dest=f.name, action="store_true", default=None, help=help_text)
            continue
        kind = {"int": int, "float": float}.get(check.kind, str)  # JSON is parsed by setting_values
        parser.add_argument(*flags, dest=f.name, type=kind, choices=check.choices, default=None, help=help_text)


def setting_values(args, cls: type[Settings], exclude: tuple[str, ...] = ()) -> dict:
    """The fields of ``cls`` the command line gave (``add_setting_arguments``' options), JSON parsed; a bad
    JSON value is refused in one line naming its option."""
    import json

    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if f.name in exclude or value is None:
            continue
        kind = f.metadata["check"].kind
        if kind in ("dict", "list"):
            option, noun = "--" + f.name.replace("_", "-"), "object" if kind == "dict" else "list"
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise SettingError(
                    f"{option} must be a JSON {noun}, e.g. '{{\"patch_size\": [32, 96, 96]}}': {exc}"
                ) from None
            if not isinstance(value, dict if kind == "dict" else list):
                raise SettingError(f"{option} must be a JSON {noun}, got {getattr(args, f.name)!r}")
        values[f.name] = value
    return values
