"""Fed-KITS19 constants, as FLamby defines them (reference §0, §1.5), and where its raw files come from."""

from flamby_flare.datasets.lazy import torch_optimizer
from flamby_flare.datasets.rounds import round_budget
from flamby_flare.download import DatasetSource, RemoteFile, listed_in

NUM_CLIENTS = 6
BATCH_SIZE = 2
NUM_EPOCHS_POOLED = 500
LR = 3e-4
Optimizer: type  # torch.optim.Adam, imported when used (flamby_flare.datasets.lazy)
__getattr__ = torch_optimizer("Adam")
METRIC_NAME = "dice"
CENTER_NAMES = ("site_7", "site_13", "site_14", "site_55", "site_57", "site_67")

# 72 is FLamby's hard-coded pooled train size N of the formula
get_nb_max_rounds = round_budget(72, NUM_CLIENTS, BATCH_SIZE, NUM_EPOCHS_POOLED)

# FLamby's per-silo sizes (reference §0), which preprocessing checks the cache against
FLAMBY_SIZES = {"train": (9, 11, 9, 9, 12, 24), "test": (3, 3, 3, 3, 4, 6)}
SPACING = (2.90, 1.45, 1.45)  # mm, (z, y, x): FLamby's nnU-Net stage-0 target spacing
PATCH_SIZE = (64, 192, 192)  # voxels, (z, y, x)

SITES = "thresholded_sites.csv"
ANONY_SITES = "anony_sites.csv"
_FLAMBY = "https://raw.githubusercontent.com/owkin/FLamby/main/flamby/datasets/fed_kits19/metadata/"
_IMAGING = "https://kits19.sfo2.digitaloceanspaces.com/master_{case:05d}.nii.gz"  # KiTS19's get_imaging.py
_SEGMENTATION = "https://raw.githubusercontent.com/neheller/kits19/master/data/case_{case:05d}/segmentation.nii.gz"


def case_files(case: str) -> tuple[RemoteFile, RemoteFile]:
    """``case_XXXXX/imaging.nii.gz`` and ``segmentation.nii.gz`` (KiTS19 publishes no checksums: each volume is
    checked to be a 3D NIfTI, and its hash recorded at the first download)."""
    number = int(case.split("_")[1])
    return (
        RemoteFile(f"{case}/imaging.nii.gz", _IMAGING.format(case=number), None),
        RemoteFile(f"{case}/segmentation.nii.gz", _SEGMENTATION.format(case=number), None),
    )


def _verify(name: str, path) -> None:
    from flamby_flare.datasets.fed_kits19.preprocess import verify_volume

    verify_volume(name, path)


SOURCE = DatasetSource(
    name="fed_kits19",
    title="Fed-KITS19",
    files=(
        RemoteFile(SITES, _FLAMBY + SITES, "bc30414fe1fcb53dcc74cc8bf4904c3bea381df77c7afcab4233eb9edc9855d3"),
        RemoteFile(
            ANONY_SITES, _FLAMBY + ANONY_SITES, "55bf2d91192857ad0f0427427aad3a1f5f29dee1b2ec4fdbc506ff1c39dc51a1"
        ),
    ),
    license="CC BY-NC-SA 4.0 (KiTS19 challenge data); FLamby's site files MIT",
    citation="Heller et al., The KiTS19 challenge data, arXiv:1904.00445; Isensee et al., nnU-Net, Nat. Methods 2021; "
    "FLamby: Ogier du Terrail et al., NeurIPS 2022",
    verify=_verify,
    listed=listed_in(SITES, "case_ids", "site_ids", case_files),  # a silo's cases, from FLamby's site file
)
