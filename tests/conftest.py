"""Shared fixtures. Real data comes from the team mirror (``../shared/mirror`` or ``FLAMBY_FLARE_MIRROR``)
through the real download code; a missing mirror is an error, never a skip.

The suite runs in pytest-xdist workers (``scripts/run_tests.sh``, ``--dist loadfile``: a module runs whole in
one worker, with its module fixtures), and the heavy session fixtures (the synthetic image data,
the heart strategy runs) are built once per session for all workers (``shared_dir``)."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Callable

import pytest

from tests.golden import pin_cpu_kernels

pin_cpu_kernels()  # before torch is imported here or in any process the tests start

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Run state that outlives a job (checkpoints, SCAFFOLD's c_i) goes to a scratch folder, not ~/.local/state.
os.environ.setdefault("FLAMBY_FLARE_STATE", tempfile.mkdtemp(prefix="flamby_flare_state_"))
torch.set_num_threads(1)


def _mirror() -> Path:
    path = Path(os.environ.get("FLAMBY_FLARE_MIRROR") or REPO.parent / "shared" / "mirror")
    if not (path / "fed_heart_disease").is_dir():
        pytest.fail(
            f"dataset mirror not found at {path}: set FLAMBY_FLARE_MIRROR to a folder laid out like ../shared/mirror"
        )
    return path.resolve()


def reference_dir() -> Path:
    """FLamby's published results (``../shared/reference``)."""
    path = REPO.parent / "shared" / "reference"
    if not (path / "flamby_results").is_dir():
        pytest.fail(f"FLamby reference results not found at {path}")
    return path


def shared_dir(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder ``build`` fills once per test session: in the one process, or, under pytest-xdist, by the
    first worker that asks (the others wait on a lock) in the session's common temporary folder."""
    from filelock import FileLock

    if not os.environ.get("PYTEST_XDIST_WORKER"):  # one process
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    common = tmp_path_factory.getbasetemp().parent  # the session's folder, above each worker's own
    folder, done = common / name, common / f"{name}.complete"
    with FileLock(str(common / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def mirror() -> Path:
    return _mirror()


@pytest.fixture(scope="session")
def data_root(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding Fed-Heart-Disease and Fed-TCGA-BRCA, downloaded (verified) from the mirror."""
    from flamby_flare.datasets import get_dataset
    from flamby_flare.download import download

    root = tmp_path_factory.mktemp("data")
    for name in ("fed_heart_disease", "fed_tcga_brca"):
        download(get_dataset(name).SOURCE, data_root=root, mirror=mirror, log=lambda _: None)
    return root


@pytest.fixture(scope="session")
def heart_dir(data_root: Path) -> Path:
    return data_root / "fed_heart_disease"


@pytest.fixture(scope="session")
def tcga_dir(data_root: Path) -> Path:
    return data_root / "fed_tcga_brca"


def run_cells(
    tmp_path_factory,
    data_root: Path,
    dataset: str,
    strategies: list[str],
    seed: int,
    rounds: dict,
    updates: dict,
    name: str,
) -> dict:
    """Several complete federated runs as consecutive workflows of one simulator job (the benchmark's way:
    NVFlare starts once), one per strategy with FLamby's hyperparameters, ``rounds[s]`` x ``updates[s]``;
    returns strategy -> its results folder."""
    from dataclasses import replace

    from flamby_flare.benchmark.runner import cell_dir, plan_cells, write_batch_job
    from tests.simulator import run_dir, run_simulator

    cells = [
        replace(
            c, hyperparameters={**c.hyperparameters, "nrounds": rounds[c.strategy], "num_updates": updates[c.strategy]}
        )
        for c in plan_cells(dataset, [seed], strategies)
        if c.strategy
    ]

    def build(root: Path) -> None:
        job = write_batch_job(cells, root / "job")
        with budget(1800, f"the {name} simulator job"):
            proc = run_simulator(job, root / "ws", len(get_sites(dataset)), {"FLAMBY_FLARE_DATA": str(data_root)})
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    root = shared_dir(tmp_path_factory, name, build)
    return {c.strategy: run_dir(root / "ws") / cell_dir(c) for c in cells}


def get_sites(dataset: str) -> list[str]:
    from flamby_flare.datasets import get_constants
    from flamby_flare.sites import expected_sites

    return expected_sites(get_constants(dataset).NUM_CLIENTS)


HEART_STRATEGIES = ("fedavg", "fedprox", "scaffold", "cyclic", "fedadam", "fedyogi", "fedadagrad")


@pytest.fixture(scope="session")
def heart_strategy_runs(tmp_path_factory, data_root) -> dict:
    """Every strategy on heart, seed 42, FLamby's hyperparameters, 2 rounds x 20 updates, 4 live site processes:
    one simulator job of seven workflows."""
    return run_cells(
        tmp_path_factory,
        data_root,
        "fed_heart_disease",
        list(HEART_STRATEGIES),
        42,
        dict.fromkeys(HEART_STRATEGIES, 2),
        dict.fromkeys(HEART_STRATEGIES, 20),
        "heart_strategies",
    )


IMAGE_MIRROR_WRITERS = {
    "fed_ixi": "write_ixi_mirror",
    "fed_isic2019": "write_isic_mirror",
    "fed_kits19": "write_kits_mirror",
    "fed_lidc_idri": "write_lidc_mirror",
    "fed_camelyon16": "write_camelyon_mirror",
}
PARALLEL_PREPROCESS = ("fed_isic2019", "fed_lidc_idri")  # the datasets whose preprocessing takes --workers


@pytest.fixture(scope="session")
def image_mirror(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``image_mirror(name)``: a mirror folder with synthetic raw files of image dataset ``name`` (real formats,
    real metadata files; ``tests/synthetic_images.py``), written once per session. Each dataset is its own
    shared folder, so workers write (and wait for) only the datasets their tests use."""

    @functools.cache
    def get(name: str) -> Path:
        from tests import synthetic_images

        write = getattr(synthetic_images, IMAGE_MIRROR_WRITERS[name])

        def build(root: Path) -> None:
            with budget(600, f"the synthetic {name} mirror"):
                write(root, mirror)

        return shared_dir(tmp_path_factory, f"image_mirror_{name}", build)

    return get


@pytest.fixture(scope="session")
def image_data_root(
    image_mirror: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Path]:
    """``image_data_root(name)``: a data root where ``flamby-flare preprocess name`` has built image dataset
    ``name`` from ``image_mirror(name)``, once per session and dataset (Fed-Camelyon16's 100 ResNet50 passes
    take 15 s on one core; the other datasets' tests need not wait for them)."""
    from flamby_flare.cli import main

    @functools.cache
    def get(name: str) -> Path:
        source = image_mirror(name)

        def build(root: Path) -> None:
            workers = ["--workers", "2"] if name in PARALLEL_PREPROCESS else []
            with budget(1200, f"preprocessing the synthetic {name}"):
                args = ["preprocess", name, "--mirror", str(source), "--data-root", str(root), "--no-pretrained"]
                assert main([*args, *workers]) == 0  # the pretrained weights: tests/test_pretrained.py

        return shared_dir(tmp_path_factory, f"image_data_{name}", build)

    return get


# The modules that take a minute or more (the 2-core machine, 2026-12-07), longest first. pytest-xdist hands out
# whole modules (--dist loadfile) in collection order (scripts/run_tests.sh turns off its own reordering, by
# test count, which started these last: a worker then ran the suite's last two minutes alone); they go first,
# in this order, and every other module after them in the order pytest-random-order shuffled.
LONG_MODULES = (
    "test_poc.py",
    "test_image_simulator.py",
    "test_production.py",
    "test_flamby_strategies.py",
    "test_security.py",
    "test_kits19_simulator.py",
    "test_resume_cyclic_and_dp.py",
    "test_benchmark.py",
    "test_privacy_simulator.py",
    "test_resume.py",
    "test_simulator.py",
)


@pytest.hookimpl(trylast=True)  # after pytest-random-order's shuffle
def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONG_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_MODULES)))  # stable: the shuffle stays within


def pytest_sessionfinish(session, exitstatus):
    """With FLAMBY_FLARE_GOLDEN=record, write what this session recorded into tests/golden.json."""
    from tests import golden

    golden.write_recorded()


@contextlib.contextmanager
def budget(seconds: float, what: str):
    """A heavy fixture's own time budget (pytest-timeout times the test functions only): past it the fixture
    fails, naming itself. Generous: minutes of work on a loaded machine still fit."""

    def expired(signum, frame):
        raise TimeoutError(f"{what} took more than its {seconds:.0f} s budget")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
