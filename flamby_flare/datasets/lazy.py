"""Lazy exports: naming a dataset (its constants, e.g. for a job file or the CLI) imports neither torch nor
pandas nor MONAI; its classes load when first used."""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable


class _LazyPackage(types.ModuleType):
    """A dataset package whose exports import on first use. An export named like its submodule (``metric``,
    ``preprocess``) is the function even after the submodule was imported by another path."""

    def __getattr__(self, name: str):
        exports = self.__dict__.get("_lazy_exports", {})
        if name not in exports:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        module, _, attribute = exports[name].partition(".")
        value = getattr(importlib.import_module(f"{self.__name__}.{module}"), attribute or name)
        self.__dict__[name] = value
        return value

    def __getattribute__(self, name: str):
        value = super().__getattribute__(name)
        if isinstance(value, types.ModuleType) and name in super().__getattribute__("__dict__").get("_lazy_exports", {}):
            del self.__dict__[name]  # the submodule import bound its module under the export's name
            return self.__getattr__(name)
        return value


def lazy_exports(package: str, exports: dict[str, str]) -> None:
    """Make ``package`` import each of ``exports`` (name -> ``"submodule"`` or ``"submodule.attribute"``) when
    first used, and keep it."""
    module = sys.modules[package]
    module._lazy_exports = exports
    module.__class__ = _LazyPackage


def torch_optimizer(name: str) -> Callable[[str], object]:
    """A ``common`` module's ``__getattr__`` giving FLamby's ``Optimizer`` (``torch.optim.<name>``) on use."""

    def __getattr__(attribute: str):
        if attribute == "Optimizer":
            import torch

            return getattr(torch.optim, name)
        raise AttributeError(attribute)

    return __getattr__
