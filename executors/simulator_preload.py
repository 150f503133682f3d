"""Imported once by the simulator's forkserver (``simulator_forkserver.PRELOAD``): what every site worker
imports after NVFlare's worker module, so that no forked worker imports it again (0.6 s of every worker's
start on the 2-core machine, before this module).

- NVFlare's communication drivers, which its ``DriverManager.search_folder`` imports file by file under the
  module names it makes of them (aiohttp and gRPC among them), whichever scheme the run uses;
- NVFlare's client API, executors and decomposers that a site's job loads;
- this project's strategy registry (``flamby_flare.strategies.base.load_registry``).

Only imports (and the registry, filled the way a worker fills it): no connection, thread or file is opened.
A module this NVFlare does not have is skipped; the worker then imports what it needs itself.
"""

from __future__ import annotations

import importlib
import os

import nvflare.fuel.f3.drivers as drivers

NVFLARE_MODULES = [
    "nvflare.client.in_process.api",
    "nvflare.app_common.executors.client_api_executor",
    "nvflare.app_common.np.np_downloader",
    "nvflare.app_common.decomposers.numpy_decomposers",
    "nvflare.app_common.widgets.convert_to_fed_event",
    "nvflare.apis.utils.analytix_utils",
    "nvflare.fuel.utils.fobs.decomposers.core_decomposers",
    "nvflare.fuel.utils.mem_utils",
    "nvflare.fuel.data_event.event_manager",
    "nvflare.fuel.f3.streaming.cacheable",
    "nvflare.fuel.f3.comm_config_utils",
]
PROJECT_MODULES = ["flamby_flare.datasets.lazy", "flamby_flare.datasets.rounds"]


def driver_modules() -> list[str]:
    """The names ``DriverManager.search_folder`` imports NVFlare's own drivers under: one per ``.py`` file
    below the drivers package, ``__init__`` files included."""
    folder, names = os.path.dirname(drivers.__file__), []
    for root, _, files in os.walk(folder):
        sub = os.path.relpath(root, folder).replace(os.sep, ".")
        for name in sorted(f[:-3] for f in files if f.endswith(".py")):
            names.append(".".join(p for p in (drivers.__package__, "" if sub == "." else sub, name) if p))
    return names


def preload() -> list[str]:
    """Import them all; the names that could not be imported."""
    from flamby_flare.strategies.base import load_registry

    missing = []
    for name in driver_modules() + NVFLARE_MODULES + PROJECT_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    load_registry()
    return missing


MISSING = preload()
