"""Shared fixtures. Real data comes from the team mirror (``../shared/mirror`` or ``FLAMBY_FLARE_MIRROR``)
through the real download code; a missing mirror is an error, never a skip."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Run state that outlives a job (checkpoints, SCAFFOLD's c_i) goes to a scratch folder, not ~/.local/state.
os.environ.setdefault("FLAMBY_FLARE_STATE", tempfile.mkdtemp(prefix="flamby_flare_state_"))
torch.set_num_threads(1)


def _mirror() -> Path:
    path = Path(os.environ.get("FLAMBY_FLARE_MIRROR") or REPO.parent / "shared" / "mirror")
    if not (path / "fed_heart_disease").is_dir():
        pytest.fail(f"dataset mirror not found at {path}: set FLAMBY_FLARE_MIRROR to a folder laid out like ../shared/mirror")
    return path.resolve()


def reference_dir() -> Path:
    """FLamby's published results (``../shared/reference``)."""
    path = REPO.parent / "shared" / "reference"
    if not (path / "flamby_results").is_dir():
        pytest.fail(f"FLamby reference results not found at {path}")
    return path


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


@pytest.fixture(scope="session")
def image_mirror(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mirror with synthetic raw files of the five image datasets (real formats, real metadata files)."""
    from tests.synthetic_images import (
        write_camelyon_mirror, write_isic_mirror, write_ixi_mirror, write_kits_mirror, write_lidc_mirror,
    )

    root = tmp_path_factory.mktemp("image_mirror")
    write_ixi_mirror(root, mirror)
    write_isic_mirror(root, mirror)
    write_kits_mirror(root, mirror)
    write_lidc_mirror(root, mirror)
    write_camelyon_mirror(root, mirror)
    return root


@pytest.fixture(scope="session")
def image_data_root(image_mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root where ``flamby-flare preprocess`` has built both image datasets from ``image_mirror``."""
    from flamby_flare.cli import main

    root = tmp_path_factory.mktemp("image_data")
    for name in ("fed_ixi", "fed_isic2019", "fed_kits19", "fed_lidc_idri", "fed_camelyon16"):
        workers = ["--workers", "2"] if name in ("fed_isic2019", "fed_lidc_idri") else []  # the parallel ones
        assert main(["preprocess", name, "--mirror", str(image_mirror), "--data-root", str(root), *workers]) == 0
    return root
