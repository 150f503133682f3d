"""Fed-LIDC-IDRI constants, as FLamby defines them (reference §0, §1.2), and where its raw files come from."""

from flamby_flare.datasets.lazy import torch_optimizer
from flamby_flare.datasets.rounds import round_budget
from flamby_flare.download import DatasetSource, RemoteFile, listed_in

NUM_CLIENTS = 4
BATCH_SIZE = 1
NUM_EPOCHS_POOLED = 100
LR = 1e-2
Optimizer: type  # torch.optim.Adam, imported when used (flamby_flare.datasets.lazy)
__getattr__ = torch_optimizer("Adam")
METRIC_NAME = "dice"
CENTER_NAMES = ("GE", "Philips", "Siemens", "Toshiba")

# 805 is FLamby's hard-coded pooled train size N of the formula
get_nb_max_rounds = round_budget(805, NUM_CLIENTS, BATCH_SIZE, NUM_EPOCHS_POOLED)

# FLamby's per-manufacturer sizes (reference §0; its metadata.csv lists 536/59/164/55 and 134/15/41/14, and
# 9 GE scans fail FLamby's conversion), which preprocessing checks the cache against
FLAMBY_SIZES = {"train": (530, 59, 164, 55), "test": (131, 15, 41, 14)}
CROP_SIZE = 384  # voxels (1 mm) per axis: every scan is centered, cropped or padded to 384^3
PATCH_SIZE = 128  # training and test patches are 128^3
CLIP = (-1024.0, 600.0)  # HU window of ClipNorm

METADATA = "metadata.csv"
ANNOTATIONS = "LIDC-XML-only.zip"
_FLAMBY = "https://raw.githubusercontent.com/owkin/FLamby/main/flamby/datasets/fed_lidc_idri/metadata/"
_TCIA_SERIES = "https://services.cancerimagingarchive.net/nbia-api/services/v1/getImage?SeriesInstanceUID={uid}"
_TCIA_XML = "https://wiki.cancerimagingarchive.net/download/attachments/1966254/LIDC-XML-only.zip"


def series_file(uid: str) -> RemoteFile:
    """One CT series as TCIA serves it: a zip of its DICOM files (no published checksum: its content is
    checked and its hash recorded at the first download)."""
    return RemoteFile(f"series/{uid}.zip", _TCIA_SERIES.format(uid=uid), None)


def _verify(name: str, path) -> None:
    from flamby_flare.datasets.fed_lidc_idri.convert import verify_raw_file

    verify_raw_file(name, path)


SOURCE = DatasetSource(
    name="fed_lidc_idri",
    title="Fed-LIDC-IDRI",
    files=(
        RemoteFile(METADATA, _FLAMBY + METADATA, "1bc9c58b33b3fdc90d2486cfd897d59d0760a8f0916375575c6791db990dd99f"),
        RemoteFile(ANNOTATIONS, _TCIA_XML, None),
    ),
    license="CC BY 3.0 (LIDC-IDRI, The Cancer Imaging Archive); FLamby's metadata file MIT",
    citation="Armato et al., Med. Phys. 38(2) 2011 (LIDC-IDRI), doi:10.7937/K9/TCIA.2015.LO9QL9SX; Clark et al., "
    "J. Digit. Imaging 2013 (TCIA); FLamby: Ogier du Terrail et al., NeurIPS 2022",
    verify=_verify,
    # a manufacturer's series, from FLamby's metadata file
    listed=listed_in(METADATA, "SeriesInstanceUID", "Manufacturer", lambda uid: (series_file(uid),)),
)
