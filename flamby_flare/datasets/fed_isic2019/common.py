"""Fed-ISIC2019 constants, as FLamby defines them (reference §0, §1.6), and where its raw files come from."""

from flamby_flare.datasets.lazy import torch_optimizer
from flamby_flare.datasets.rounds import round_budget
from flamby_flare.download import DatasetSource, RemoteFile

NUM_CLIENTS = 6
BATCH_SIZE = 64
NUM_EPOCHS_POOLED = 20
LR = 5e-4
Optimizer: type  # torch.optim.Adam, imported when used (flamby_flare.datasets.lazy)
__getattr__ = torch_optimizer("Adam")
METRIC_NAME = "balanced_accuracy"
CENTER_NAMES = ("BCN", "HAM_vidir_molemax", "HAM_vidir_modern", "HAM_rosendahl", "MSK", "HAM_vienna_dias")

# FLamby's per-center sizes (reference §0), which preprocessing checks the cache against
FLAMBY_SIZES = {"train": (9930, 3163, 2691, 1807, 655, 351), "test": (2483, 791, 672, 452, 164, 88)}

# 18413 is FLamby's hard-coded pooled train size N of the formula
get_nb_max_rounds = round_budget(18413, NUM_CLIENTS, BATCH_SIZE, NUM_EPOCHS_POOLED)


def _verify(name: str, path) -> None:
    from flamby_flare.datasets.fed_isic2019.preprocess import verify_raw_file

    verify_raw_file(name, path)


# The ISIC 2019 challenge's training files (no published checksum: checked for their layout and hashed at the
# first download) and FLamby's two metadata files (published in its repository).
ARCHIVE = "ISIC_2019_Training_Input.zip"
METADATA = "ISIC_2019_Training_Metadata.csv"
GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
HAM_METADATA = "HAM10000_metadata.csv"
SPLIT = "train_test_split.csv"
_ISIC = "https://isic-challenge-data.s3.amazonaws.com/2019/"
_FLAMBY = "https://raw.githubusercontent.com/owkin/FLamby/main/flamby/datasets/fed_isic2019/"
SOURCE = DatasetSource(
    name="fed_isic2019",
    title="Fed-ISIC2019",
    files=(
        RemoteFile(ARCHIVE, _ISIC + ARCHIVE, None),
        RemoteFile(METADATA, _ISIC + METADATA, None),
        RemoteFile(GROUND_TRUTH, _ISIC + GROUND_TRUTH, None),
        RemoteFile(
            HAM_METADATA,
            _FLAMBY + "HAM10000_metadata",
            "de17ec44cb25ea9c3f6378ba18d69224c740afd62e86ec2edc6a894d6aa663d3",
        ),
        RemoteFile(
            SPLIT,
            _FLAMBY + "dataset_creation_scripts/train_test_split",
            "d0f9d0d0102f60d78b4c5f9f0ef32100881a8e92fe6c38644f980b3eb4e1a86c",
        ),
    ),
    license="CC BY-NC 4.0 (ISIC 2019 challenge data: BCN_20000, HAM10000, MSK); FLamby's metadata files MIT",
    citation="Tschandl et al., Sci. Data 2018 (HAM10000); Codella et al., ISBI 2018 (MSK); Combalia et al., "
    "arXiv:1908.02288 (BCN_20000); FLamby: Ogier du Terrail et al., NeurIPS 2022",
    verify=_verify,
)
