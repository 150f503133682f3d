"""Golden results: what the suite's deterministic runs produce, recorded once in ``tests/golden.json``.

A test hands its run's outcome to ``check(key, value)`` (JSON-like: dicts, lists, numbers, strings, None);
the suite fails on any change of a recorded result. Numbers must match to a relative 1e-6 (absolute 1e-9
near zero): any change of algorithm, seed, batch order, hyperparameter or data moves these results by far
more, while summation order inside BLAS kernels, which differs between CPU types, moves them by less.
Integers, strings and the structure must match exactly; NaN matches only NaN.

torch, MKL and oneDNN pick their kernels, and so their summation order, by the CPU's instruction set:
unpinned, an AVX-512 Xeon moved the tabular results by up to 1e-5 relative (a FedAdam bias near zero by
far more) and Fed-ISIC2019's by 1e-3. The suite therefore pins the kernels to AVX2's (``pin_cpu_kernels``:
``ATEN_CPU_CAPABILITY``, ``MKL_CBWR``, ``ONEDNN_MAX_CPU_ISA``, set before torch is imported and inherited
by every simulator, POC and production process the tests start), as on the machine that recorded the
file (an AVX-512 Xeon, pinned): on an AVX2 or AVX-512 machine the tabular results match to 1e-6. The image
models' results (keys ``image/...``) match to a relative 1e-3 (absolute 1e-6) everywhere (oneDNN may still
block its convolutions by the machine's caches): on an AVX-only AMD EPYC they moved by up to 6e-6 relative
on weights, 3e-8 on biases that are zero up to rounding (1e-8), and 2.8e-4 on the running means deep in
Fed-LIDC-IDRI's VNet (45 M parameters, 16 normalization layers deep); a change of seed or algorithm moves
them by 1e-2 and more. A CPU without AVX2 runs its own kernels, so there every key gets a looser tolerance
(``OTHER_CPU``, below). So does a CPU of another vendor than the recording machine's (``RECORDING_VENDOR``): pinned to
AVX2, an AMD EPYC still moved the tabular results by up to 3e-5 relative (a TCGA bias of 3e-3 by 1e-7,
a per-site C-index by 2.6e-6, FedAdam's and SCAFFOLD's server states near zero by 1e-8), as MKL takes
its own code paths on AMD, and FedAdam's adaptive step (m / (sqrt(v) + tau), v near zero) amplified that
into TCGA's final bias moving from 2.6e-3 to 3.5e-3: off the recording vendor, or without AVX2, every
key is compared to a relative 1e-3 or an absolute 1e-3 (``OTHER_CPU``). There, the image runs' per-site test
metrics are compared to an absolute ``IMAGE_METRIC_ABS``: each is computed on a handful of synthetic test
samples, where a model within 1e-3 of the recorded one can swap two close scores, and one swapped pair moves an
AUC by a whole step of 1 / (positives x negatives) (Fed-Camelyon16's site-2, 55 test samples: 0.5390 on an AMD
EPYC against 0.5517 recorded, with every model entry within 1e-3); the model itself, which decides them, stays
pinned at 1e-3.

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
REL, ABS = 1e-6, 1e-9
TOLERANCES = {"image/": (1e-3, 1e-6)}  # key prefix -> (relative, absolute): see the module docstring
OTHER_CPU = (1e-3, 1e-3)  # every key, on a CPU without AVX2 or of another vendor than the recording one
IMAGE_METRIC_ABS = 0.05  # there, an image run's per-site test metrics (a few swapped pairs of scores; see above)
METRICS = ("per_site", "per_site_personalized")  # where a run's pinned record holds its per-site test metrics
_recorded: dict[str, Any] = {}
PINNED_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
RECORDING_VENDOR = "GenuineIntel"  # the CPU vendor of the machine that recorded golden.json


def cpu_vendor() -> str | None:
    """``vendor_id`` of /proc/cpuinfo (None where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def pin_cpu_kernels() -> None:
    """Run torch, MKL and oneDNN with AVX2's kernels (the recording machine's) where the CPU has AVX2; a
    variable already set is kept. Must run before torch is imported."""
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


def _tolerance(key: str, pinned: bool | None = None) -> tuple[float, float]:
    """``key``'s (relative, absolute) tolerance: 1e-6 with the recording machine's kernels (pinned, on its CPU
    vendor), the image models' 1e-3 always; a CPU without AVX2 or of another vendor runs other kernels, so
    every key gets the image models' tolerance."""
    pinned = kernels_pinned() and cpu_vendor() == RECORDING_VENDOR if pinned is None else pinned
    if not pinned:
        return OTHER_CPU
    return next((tol for prefix, tol in TOLERANCES.items() if key.startswith(prefix)), (REL, ABS))


def _differences(
    expected: Any,
    got: Any,
    where: str,
    tol: tuple[float, float] = (REL, ABS),
    metric_tol: tuple[float, float] | None = None,
) -> list[str]:
    """What differs; ``metric_tol``: the tolerance under a top-level ``METRICS`` entry instead of ``tol``."""
    if isinstance(expected, dict) and isinstance(got, dict):
        if expected.keys() != got.keys():
            return [f"{where}: keys {sorted(got)} != recorded {sorted(expected)}"]
        return [
            d
            for k in expected
            for d in _differences(
                expected[k], got[k], f"{where}.{k}", metric_tol if metric_tol and k in METRICS else tol
            )
        ]
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [f"{where}: {len(got)} items != recorded {len(expected)}"]
        return [d for i, (e, g) in enumerate(zip(expected, got)) for d in _differences(e, g, f"{where}[{i}]", tol)]
    numbers = (int, float)
    if isinstance(expected, float) or isinstance(got, float):
        if isinstance(expected, numbers) and isinstance(got, numbers) and not isinstance(expected, bool):
            if math.isclose(expected, got, rel_tol=tol[0], abs_tol=tol[1]):
                return []
    elif expected == got and type(expected) is type(got):
        return []
    return [f"{where}: {got!r} != recorded {expected!r}"]


def check(key: str, value: Any, tolerance: tuple[float, float] | None = None) -> None:
    """Assert that ``value`` equals the result recorded under ``key`` (with ``FLAMBY_FLARE_GOLDEN=record``:
    record it instead). ``tolerance`` (relative, absolute): compare another run against ``key`` at that
    precision (an encrypted run against its plaintext one, say); such a check never records."""
    got = json.loads(json.dumps(_plain(value)))
    if tolerance is not None:
        golden = _load()
        assert key in golden, f"no golden result {key!r} to compare with"
        problems = _differences(golden[key], got, key, tolerance)
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
    other_cpu = _tolerance(key) == OTHER_CPU and key.startswith("image/")
    problems = _differences(golden[key], got, key, _tolerance(key), (0.0, IMAGE_METRIC_ABS) if other_cpu else None)
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
