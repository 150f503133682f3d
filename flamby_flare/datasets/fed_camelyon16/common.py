"""Fed-Camelyon16 constants, as FLamby defines them (reference §0, §1.1), and where its raw files come from."""

from flamby_flare.datasets.lazy import torch_optimizer
from flamby_flare.datasets.rounds import round_budget
from flamby_flare.download import DatasetSource, RemoteFile, listed_in

NUM_CLIENTS = 2
BATCH_SIZE = 16
NUM_EPOCHS_POOLED = 45
LR = 1e-3
Optimizer: type  # torch.optim.Adam, imported when used (flamby_flare.datasets.lazy)
__getattr__ = torch_optimizer("Adam")
METRIC_NAME = "auc"
CENTER_NAMES = ("RUMC", "UMCU")

# 270 is FLamby's hard-coded pooled train size N of the formula
get_nb_max_rounds = round_budget(270, NUM_CLIENTS, BATCH_SIZE, NUM_EPOCHS_POOLED)

# FLamby's per-hospital sizes (reference §0), which preprocessing checks the cache against
FLAMBY_SIZES = {"train": (169, 101), "test": (74, 55)}
TILE = 224  # pixels, at LEVEL
LEVEL = 1
MIN_TISSUE = 0.6  # a tile is kept when at least this fraction of it is tissue
MAX_TILES = 10000  # FLamby's collate_fn pads or truncates every slide to this many tiles
FEATURES = 2048  # ResNet50's pooled features

METADATA = "metadata.csv"
LABELS = "labels.csv"
REFERENCE = "reference.csv"
_FLAMBY = "https://raw.githubusercontent.com/owkin/FLamby/main/flamby/datasets/fed_camelyon16/"
_SLIDES = "https://camelyon-dataset.s3.amazonaws.com/CAMELYON16/images/"  # the AWS Open Data copy


def slide_file(name: str) -> RemoteFile:
    """One whole-slide image (no published checksum: it must open as a pyramidal TIFF; its hash is recorded at
    the first download)."""
    return RemoteFile(f"slides/{name}", _SLIDES + name, None)


def _verify(name: str, path) -> None:
    from flamby_flare.datasets.fed_camelyon16.tiling import verify_slide

    verify_slide(path)


SOURCE = DatasetSource(
    name="fed_camelyon16",
    title="Fed-Camelyon16",
    files=(
        RemoteFile(
            METADATA,
            _FLAMBY + "metadata/" + METADATA,
            "0992fcaeb32cf36d6dce13583b634734bfa33dfac95dcbff32996477d9a77a85",
        ),
        RemoteFile(LABELS, _FLAMBY + LABELS, "83430b2d5806b33d06e004a68c051555337055eb64fdc7fbf70e7f4749f73936"),
        RemoteFile(
            REFERENCE,
            _FLAMBY + "metadata/" + REFERENCE,
            "03810113343422afd75dc2f89d33841a6c681eedd70615ebec1dc1f0901382a3",
        ),
    ),
    license="CC0 1.0 (CAMELYON16, Radboud UMC and UMC Utrecht); FLamby's metadata files MIT",
    citation="Ehteshami Bejnordi et al., JAMA 318(22) 2017 (CAMELYON16); Ilse, Tomczak, Welling, ICML 2018 "
    "(attention MIL); FLamby: Ogier du Terrail et al., NeurIPS 2022",
    verify=_verify,
    # a hospital's slides, from FLamby's metadata file (its corrected hospital column)
    listed=listed_in(METADATA, "slide_name", "hospital_corrected", lambda name: (slide_file(name),)),
)
