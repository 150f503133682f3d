"""Lazy exports: naming a dataset (its constants, e.g. for a job file or the CLI) imports neither torch nor
pandas nor MONAI; its classes load when first used, after a check that the optional packages they need
(the ``images`` extra) are installed."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable

from flamby_flare.errors import MissingExtraError

# The optional packages of each extra of the distribution (pyproject.toml's optional-dependencies).
EXTRAS = {
    "images": ("monai", "nibabel", "efficientnet_pytorch", "pydicom", "tiffslide"),
    "mlflow": ("mlflow", "sqlalchemy", "alembic"),
    "quantization": ("bitsandbytes",),
    "he": ("tenseal",),
}


def _installed(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None  # None: import blocked
    return importlib.util.find_spec(module) is not None


def check_installed(package: str, modules: tuple[str, ...]) -> None:
    """Refuse in one line, naming the extra to install, when ``package`` needs ``modules`` that are missing."""
    if missing := [m for m in modules if not _installed(m)]:
        extra = next(e for e, members in EXTRAS.items() if missing[0] in members)
        raise MissingExtraError(
            f"{package.rsplit('.', 1)[-1]} needs {', '.join(missing)}, from flamby-flare's "
            f"{extra!r} extra: pip install 'flamby-flare[{extra}]'"
        )


class _LazyPackage(types.ModuleType):
    """A dataset package whose exports import on first use. An export named like its submodule (``metric``,
    ``preprocess``) is the function even after the submodule was imported by another path."""

    def __getattr__(self, name: str):
        exports = self.__dict__.get("_lazy_exports", {})
        if name not in exports:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        check_installed(self.__name__, self.__dict__.get("_requires", ()))
        module, _, attribute = exports[name].partition(".")
        value = getattr(importlib.import_module(f"{self.__name__}.{module}"), attribute or name)
        if name not in self.__dict__.get("_dynamic", ()):
            self.__dict__[name] = value
        return value

    def __getattribute__(self, name: str):
        value = super().__getattribute__(name)
        if isinstance(value, types.ModuleType) and name in super().__getattribute__("__dict__").get(
            "_lazy_exports", {}
        ):
            del self.__dict__[name]  # the submodule import bound its module under the export's name
            return self.__getattr__(name)
        return value


def lazy_exports(
    package: str,
    exports: dict[str, str],
    requires: tuple[str, ...] = (),
    dynamic: tuple[str, ...] = (),
    site_imports: tuple[str, ...] = (),
) -> None:
    """Make ``package`` import each of ``exports`` (name -> ``"submodule"`` or ``"submodule.attribute"``) when
    first used, and keep it (``dynamic`` ones are asked for again at every use); ``requires``: optional
    modules (of ``EXTRAS``) checked first; ``site_imports``: the third-party modules its site code imports
    when first used (its model, loss, metric, augmentation), which NVFlare's simulator preloads once for
    all its site workers (``executors.simulator_forkserver``)."""
    module = sys.modules[package]
    module._lazy_exports = exports
    module._requires = requires
    module._dynamic = dynamic
    module._site_imports = site_imports
    module.__class__ = _LazyPackage


def site_imports(dataset: types.ModuleType) -> tuple[str, ...]:
    """The third-party modules a site of ``dataset`` (a dataset package) imports on first use."""
    return tuple(dataset.__dict__.get("_site_imports", ()))


def torch_optimizer(name: str) -> Callable[[str], object]:
    """A ``common`` module's ``__getattr__`` giving FLamby's ``Optimizer`` (``torch.optim.<name>``) on use."""

    def __getattr__(attribute: str):
        if attribute == "Optimizer":
            import torch

            return getattr(torch.optim, name)
        raise AttributeError(attribute)

    return __getattr__
