"""Golden results: what the suite's deterministic runs produce, recorded once in ``tests/golden.json``.

A test hands its run's outcome to ``check(key, value)`` (JSON-like: dicts, lists, numbers, strings, None); the
suite fails on any change of a recorded result beyond a tolerance that follows from the quantity, the same on
every x86-64 CPU (Intel or AMD; AVX-512, AVX2 or neither) and under any kernel choice (``ATEN_CPU_CAPABILITY``,
``MKL_CBWR``, ``ONEDNN_MAX_CPU_ISA``). Bit-identity belongs to one machine, and other tests assert it there
(``-t 1`` vs ``-t 4``, resume vs uninterrupted, NVFlare vs the in-process runner); across machines the summation
order inside BLAS and convolution kernels differs, so results move by rounding, amplified by training:

- A model or strategy state (a ``model`` entry, each part of a ``strategy_state``) is compared entry by entry to
  ``rel`` of the whole state's RMS, not of each entry's own value: a bias or a normalization layer's mean near
  zero moves by rounding of the state's scale, which no tolerance relative to the entry covers. A fingerprinted
  entry (``fingerprint``) gets the bounds that follow for its statistics: its sum within n x that, its sum of
  squares within 2 x that x sqrt(n x sq) (+ n x that^2).
- Every other number (losses, epsilons, noise) to ``rel`` of itself.
- An image run's per-site test metrics to an absolute ``IMAGE_METRIC_ABS``: each is computed on a handful of
  synthetic test samples, where a model within tolerance can swap two close scores, and one swapped pair
  moves an AUC by a whole step of 1 / (positives x negatives) (Fed-Camelyon16's site-2: 0.5390 on an AMD EPYC
  against 0.5517 recorded).

``rel`` is ``TABULAR_REL`` (1e-4), or ``IMAGE_REL`` (1e-2) for keys ``image/...``. Measured against the record
(made with AVX2's kernels on an AVX-512 Xeon; Fed-ISIC2019's on an AMD EPYC) on a 2-core AMD EPYC with the portable kernels
(``ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE ONEDNN_MAX_CPU_ISA=SSE41``), the largest moves were 3.6e-6 of a
tabular state's RMS (SCAFFOLD's server control variate), 5e-6 of a tabular loss, 8.5e-4 of an image model's RMS
(Fed-ISIC2019's normalization weights, trained on batches of 3 through 16 normalization layers, with timm's
EfficientNet; 2.7e-4 with FLamby's), 1e-4 of an image loss and 0.0083 of an image metric; a change of seed, data or
algorithm moves them by 1e-2 and more. The Cox model's bias in Fed-TCGA-BRCA is no result: the partial likelihood
does not change when every score shifts, so its gradient is zero up to rounding, and FedAdam's step (m / (sqrt(v) +
tau), v of rounding size) turns that rounding into moves of the server learning rate's size
(``tests/test_simulator.py`` leaves it out). Integers, strings and the structure must match exactly; NaN matches
only NaN.

The suite still pins torch, MKL and oneDNN to AVX2's kernels where the CPU has them and the variable is unset
(``pin_cpu_kernels``), which keeps runs close to the record; set a variable to run the suite under other kernels.

A deliberate change of results regenerates the file, and its commit shows the diff:

    FLAMBY_FLARE_GOLDEN=record bash scripts/run_tests.sh [pytest selection]

(only the keys the selected tests check are rewritten; the others are kept).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

PATH = Path(__file__).with_name("golden.json")
RECORD = os.environ.get("FLAMBY_FLARE_GOLDEN") == "record"
TABULAR_REL, IMAGE_REL = 1e-4, 1e-2  # see the module docstring
IMAGE_METRIC_ABS = 0.05  # an image run's per-site test metrics: a few swapped pairs of close scores
METRICS = ("per_site", "per_site_personalized")  # where a run's pinned record holds its per-site test metrics
FINGERPRINT = {"n", "sum", "sq", "first"}
_recorded: dict[str, Any] = {}
PINNED_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
USER_KERNELS = {name: os.environ[name] for name in PINNED_KERNELS if name in os.environ}  # set before pinning


def pin_cpu_kernels() -> None:
    """Run torch, MKL and oneDNN with AVX2's kernels (the recording machine's) where the CPU has AVX2; a
    variable already set (``USER_KERNELS``) is kept. Must run before torch is imported."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return
    if "avx2" in flags:
        for name, value in PINNED_KERNELS.items():
            os.environ.setdefault(name, value)


def _plain(value: Any) -> Any:
    """``value`` with NumPy and torch scalars and arrays as Python numbers and lists, tuples as lists."""
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value.item())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no NaN or inf: "nan", "inf", "-inf"
    return value


def fingerprint(state: dict) -> dict:
    """A model state reduced to what pins it: every value of a small entry (at most 16 numbers), else its
    size, sum, sum of squares and first 4 values (float64 over the flattened entry)."""
    out = {}
    for key, value in state.items():
        array = np.asarray(
            value.detach().cpu().numpy() if hasattr(value, "detach") else value, dtype=np.float64
        ).ravel()
        if array.size <= 16:
            out[key] = array.tolist()
        else:
            out[key] = {
                "n": int(array.size),
                "sum": float(array.sum()),
                "sq": float((array * array).sum()),
                "first": array[:4].tolist(),
            }
    return out


def _load() -> dict:
    return json.loads(PATH.read_text()) if PATH.is_file() else {}


def kernels_pinned() -> bool:
    """Whether this process runs the recording machine's kernels (``pin_cpu_kernels`` took effect)."""
    return all(os.environ.get(name) == value for name, value in PINNED_KERNELS.items())


def relative(key: str) -> float:
    """``key``'s relative tolerance (see the module docstring)."""
    return IMAGE_REL if key.startswith("image/") else TABULAR_REL


def _state_scale(state: dict) -> float:
    """The RMS over every number of a state (fingerprinted entries by their n and sum of squares)."""
    n = squares = 0.0
    for value in state.values():
        if isinstance(value, dict):
            n, squares = n + value["n"], squares + value["sq"]
        else:
            n, squares = n + len(value), squares + sum(v * v for v in value)
    return math.sqrt(squares / n) if n else 0.0


def _close(expected: Any, got: Any, where: str, abs_tol: float, rel_tol: float = 0.0) -> list[str]:
    numbers = (int, float)
    if isinstance(expected, float) or isinstance(got, float):
        if isinstance(expected, numbers) and isinstance(got, numbers) and not isinstance(expected, bool):
            if math.isclose(expected, got, rel_tol=rel_tol, abs_tol=abs_tol):
                return []
    elif expected == got and type(expected) is type(got):
        return []
    return [f"{where}: {got!r} != recorded {expected!r}"]


def _state_differences(expected: dict, got: dict, where: str, rel: float) -> list[str]:
    """A state's entries against ``rel`` x the state's RMS (fingerprints: the bounds that follow)."""
    if expected.keys() != got.keys():
        return [f"{where}: keys {sorted(got)} != recorded {sorted(expected)}"]
    t = rel * _state_scale(expected)
    problems = []
    for name, e in expected.items():
        g, at = got[name], f"{where}.{name}"
        if isinstance(e, dict) and isinstance(g, dict) and e.keys() == g.keys() == FINGERPRINT:
            n = e["n"]
            problems += _close(e["n"], g["n"], f"{at}.n", 0.0)
            problems += _close(e["sum"], g["sum"], f"{at}.sum", n * t)
            problems += _close(e["sq"], g["sq"], f"{at}.sq", 2 * t * math.sqrt(n * e["sq"]) + n * t * t)
            problems += _differences(e["first"], g["first"], f"{at}.first", (0.0, t))
        else:
            problems += _differences(e, g, at, (0.0, t))
    return problems


def _differences(
    expected: Any,
    got: Any,
    where: str,
    tol: tuple[float, float],
    metric_abs: float | None = None,
    states: bool = True,
) -> list[str]:
    """What differs, each number within ``tol`` (relative, absolute); with ``states``, a state (a ``model`` entry, each part of a ``strategy_state``) by
    ``_state_differences`` at ``tol``'s relative; with ``metric_abs``, the numbers under a top-level
    ``METRICS`` entry within that absolute."""
    if isinstance(expected, dict) and isinstance(got, dict):
        if expected.keys() != got.keys():
            return [f"{where}: keys {sorted(got)} != recorded {sorted(expected)}"]
        problems = []
        for k in expected:
            at = f"{where}.{k}"
            if not states:
                problems += _differences(expected[k], got[k], at, tol, states=False)
            elif k == "model" and isinstance(expected[k], dict):
                problems += _state_differences(expected[k], got[k], at, tol[0])
            elif k == "strategy_state" and isinstance(expected[k], dict) and isinstance(got[k], dict):
                if expected[k].keys() != got[k].keys():
                    problems.append(f"{at}: keys {sorted(got[k])} != recorded {sorted(expected[k])}")
                    continue
                for part in expected[k]:
                    problems += _state_differences(expected[k][part], got[k][part], f"{at}.{part}", tol[0])
            elif metric_abs is not None and k in METRICS:
                problems += _differences(expected[k], got[k], at, (0.0, metric_abs))
            else:
                problems += _differences(expected[k], got[k], at, tol)
        return problems
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [f"{where}: {len(got)} items != recorded {len(expected)}"]
        return [
            d
            for i, (e, g) in enumerate(zip(expected, got))
            for d in _differences(e, g, f"{where}[{i}]", tol, None, states)
        ]
    return _close(expected, got, where, tol[1], tol[0])


def check(key: str, value: Any, tolerance: tuple[float, float] | None = None) -> None:
    """Assert that ``value`` equals the result recorded under ``key`` (with ``FLAMBY_FLARE_GOLDEN=record``:
    record it instead). ``tolerance`` (relative, absolute): compare another run against ``key`` at that
    precision (an encrypted run against its plaintext one, say); such a check never records."""
    got = json.loads(json.dumps(_plain(value)))
    if tolerance is not None:
        golden = _load()
        assert key in golden, f"no golden result {key!r} to compare with"
        problems = _differences(golden[key], got, key, tolerance, states=False)  # each number as given
        assert not problems, f"{len(problems)} difference(s) beyond {tolerance}:\n" + "\n".join(problems[:20])
        return
    if RECORD:
        _recorded[key] = got
        return
    golden = _load()
    if key not in golden:
        raise AssertionError(
            f"no golden result {key!r} in {PATH.name}: record it with "
            "FLAMBY_FLARE_GOLDEN=record bash scripts/run_tests.sh -k <this test>"
        )
    rel = relative(key)
    metric_abs = IMAGE_METRIC_ABS if key.startswith("image/") else None
    problems = _differences(golden[key], got, key, (rel, rel * 1e-3), metric_abs)
    assert not problems, (
        f"{len(problems)} difference(s) from the recorded result (tests/golden.py says how to "
        "regenerate after a deliberate change):\n" + "\n".join(problems[:20])
    )


def write_recorded() -> None:
    """Merge what this session recorded into ``golden.json`` (called at the end of a recording session)."""
    if not _recorded:
        return
    from filelock import FileLock

    with FileLock(f"{PATH}.lock"):  # pytest-xdist: each worker merges its own
        golden = {**_load(), **_recorded}
        PATH.write_text(json.dumps(dict(sorted(golden.items())), indent=1, sort_keys=True) + "\n")
