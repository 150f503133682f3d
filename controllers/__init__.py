"""Federated strategies as NVFlare ``ModelController`` workflows: ``controllers.<Label>`` for every strategy
registered in ``flamby_flare.strategies`` (``controllers.FedAvg``, ``controllers.FedProx``, ...), each a
``StrategyController`` running that strategy's server rule, its sites running its site rule.

Nothing heavy is imported until a controller is asked for (the CLI and the job generator only read
``controllers.settings``)."""

from __future__ import annotations

from executors import simulator_shim

simulator_shim.apply_server()  # in NVFlare's simulator server only; the controller then starts its forkserver

_CONTROLLERS: dict = {}


def controller_class(label: str):
    """``controllers.<label>``, made once per strategy."""
    if label not in _CONTROLLERS:
        from controllers.base import controller_for
        from flamby_flare.strategies.base import by_label

        strategy = by_label(label)
        if strategy is None:
            raise AttributeError(label)
        _CONTROLLERS[label] = controller_for(strategy)
    return _CONTROLLERS[label]


def __getattr__(name: str):
    """``controllers.FedAvg`` and the others; a job naming an unknown class fails at start with the known ones."""
    if name in ("StrategyController", "controller_for"):
        from controllers import base

        return getattr(base, name)
    if name == "SiteResult":
        from flamby_flare.strategies.base import SiteResult

        return SiteResult
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return controller_class(name)
    except AttributeError:
        from flamby_flare.strategies.base import get_strategy, strategy_names

        known = ", ".join(f"controllers.{get_strategy(n).label}" for n in strategy_names())
        raise AttributeError(f"unknown strategy {name!r}; flamby-flare strategies: {known}") from None


def __dir__() -> list[str]:
    from flamby_flare.strategies.base import get_strategy, strategy_names

    return sorted(
        list(globals()) + ["StrategyController", "SiteResult"] + [get_strategy(n).label for n in strategy_names()]
    )


__all__ = ["StrategyController", "SiteResult", "controller_class", "controller_for"]
