"""The ImageNet weights FLamby's image baselines start from, fetched like a dataset's raw files.

Fed-ISIC2019's EfficientNet-b0 starts from ``efficientnet_pytorch``'s ImageNet file (what FLamby's
``EfficientNet.from_pretrained`` loads); Fed-Camelyon16's tile features come from torchvision's ImageNet ResNet50
(``ResNet50_Weights.IMAGENET1K_V1``, what FLamby's tiling script uses). Each file is fetched once from its
public URL, or from a mirror folder laid out as ``<mirror>/<dataset>/<file>``, into
``<data root>/pretrained/<file>``. Its publisher put the first 8 hex digits of its SHA-256 in its name
(torch.hub's convention, which torch.hub checks the same way): a fetched file must match them or it is deleted;
its whole SHA-256 is then recorded beside it (``<file>.sha256``) and checked at every use. Another file (a
mirror's own weights) is kept only with ``accept_other`` (``--accept-new-checksums``), said in the log. Either
way the file must load into the architecture, strictly.

Fed-ISIC2019's model starts from its file by default (``start_weights``: jobs, the benchmark, the in-process
API's ``initial_model``); Fed-Camelyon16's preprocessing computes its tile features with its file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from flamby_flare.errors import DatasetNotFoundError, DownloadError

FOLDER = "pretrained"


@dataclass(frozen=True)
class Weights:
    """One weights file: its name (ending ``-<first 8 hex digits of its SHA-256>.<ext>``), URL and what it is."""

    dataset: str
    name: str
    url: str
    what: str
    for_model: bool  # the baseline model starts from it (else: the dataset's preprocessing uses it)

    @property
    def sha256_prefix(self) -> str:
        return self.name.rsplit("-", 1)[1].split(".", 1)[0]


WEIGHTS = {
    "fed_isic2019": Weights(
        "fed_isic2019",
        "efficientnet-b0-355c32eb.pth",
        "https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/efficientnet-b0-355c32eb.pth",
        "efficientnet_pytorch's ImageNet EfficientNet-b0",
        True,
    ),
    "fed_camelyon16": Weights(
        "fed_camelyon16",
        "resnet50-0676ba61.pth",
        "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        "torchvision's ImageNet ResNet50 (IMAGENET1K_V1)",
        False,
    ),
}


def weights_path(dataset: str, data_root: str | os.PathLike | None = None) -> Path:
    """Where ``dataset``'s ImageNet weights live under the data root."""
    from flamby_flare.paths import resolve_data_root

    return resolve_data_root(data_root) / FOLDER / WEIGHTS[dataset].name


def check_content(dataset: str, path: Path) -> None:
    """Raise ValueError unless ``path`` is a state dict that loads, strictly, into ``dataset``'s architecture."""
    import torch

    if dataset == "fed_isic2019":
        from efficientnet_pytorch import EfficientNet

        model = EfficientNet.from_name("efficientnet-b0")
    else:
        from torchvision.models import resnet50

        model = resnet50()
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:  # torch's unpickler and load_state_dict raise many kinds
        raise ValueError(f"not a state dict of {WEIGHTS[dataset].what}: {' '.join(str(e).split())[:160]}") from None


def start_weights(
    dataset: str,
    pretrained: bool = True,
    pretrained_weights: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
) -> Path | None:
    """The file ``dataset``'s initial model starts from: ``pretrained_weights`` when given, else with
    ``pretrained`` the fetched ImageNet weights where its baseline has them (``locate``), else None (FLamby's
    initial model from the seed, from scratch)."""
    if pretrained_weights is not None:
        return Path(pretrained_weights)
    if pretrained and dataset in WEIGHTS and WEIGHTS[dataset].for_model:
        return locate(dataset, data_root)
    return None


def _recorded(path: Path) -> str | None:
    record = path.with_name(path.name + ".sha256")
    return record.read_text().strip() if record.is_file() else None


def locate(dataset: str, data_root: str | os.PathLike | None = None) -> Path:
    """``dataset``'s fetched ImageNet weights, checked against the SHA-256 recorded when they were fetched;
    missing or changed: one line naming the command that fetches them."""
    from flamby_flare.download import sha256sum

    path = weights_path(dataset, data_root)
    weights = WEIGHTS[dataset]
    fix = f"run `flamby-flare download {dataset}` (or pretrained false / --no-pretrained to start from scratch)"
    if not path.is_file() or _recorded(path) is None:
        raise DatasetNotFoundError(f"{weights.what} ({weights.name}) not found in {path.parent}: {fix}")
    if sha256sum(path) != _recorded(path):
        raise DatasetNotFoundError(f"{path} changed since it was fetched (its SHA-256 differs): {fix}")
    return path


def fetch(
    dataset: str,
    data_root: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
    accept_other: bool = False,
) -> Path:
    """``dataset``'s ImageNet weights under the data root, fetched (mirror > ``FLAMBY_FLARE_MIRROR`` > URL) and
    checked if not there yet. A file whose SHA-256 does not start as its name says is deleted, unless
    ``accept_other``; one that does not load into the architecture is deleted."""
    from flamby_flare.download import RemoteFile, _fetch, sha256sum
    from flamby_flare.paths import resolve_mirror

    weights = WEIGHTS[dataset]
    path = weights_path(dataset, data_root)
    try:
        located = locate(dataset, data_root)
        log(f"  {weights.name}: verified")
        return located
    except DatasetNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    origin = _fetch(RemoteFile(weights.name, weights.url, None), dataset, part, resolve_mirror(mirror), log)
    digest = sha256sum(part)
    published = digest.startswith(weights.sha256_prefix)
    if not published and not accept_other:
        part.unlink()
        raise DownloadError(
            f"{weights.name} from {origin} does not match the SHA-256 its name gives ({weights.sha256_prefix}..., "
            f"got {digest[:8]}...); nothing was kept (--accept-new-checksums keeps another file on purpose)"
        )
    try:
        check_content(dataset, part)
    except ValueError as exc:
        part.unlink()
        raise DownloadError(f"{weights.name} from {origin}: {exc}; nothing was kept") from None
    os.replace(part, path)
    path.with_name(path.name + ".sha256").write_text(digest + "\n")
    if published:
        log(f"  {weights.name}: fetched from {origin}, verified ({weights.what})")
    else:
        log(
            f"  {weights.name}: fetched from {origin}: NOT the published file (SHA-256 {digest[:8]}..., its name "
            f"says {weights.sha256_prefix}...), kept as --accept-new-checksums asks"
        )
    return path
