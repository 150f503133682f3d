"""A site's settings (the executor's arguments in a job's client config), one frozen dataclass validated
when the job starts, so a bad value is refused in one line naming it; the trainer reads them from here."""

from __future__ import annotations

import re
from dataclasses import dataclass

from flamby_flare.datasets import DATASETS
from flamby_flare.settings import SettingError, Settings, setting

PRECISIONS = ("fp32", "bf16")
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


@dataclass(frozen=True)
class SiteSettings(Settings):
    """Args:
    dataset: the FLamby dataset name, e.g. ``"fed_heart_disease"``.
    data_root: the site's data root (None: the one its startup kit names in ``local/flamby_flare.json``,
        else ``FLAMBY_FLARE_DATA``, else the per-user cache).
    device: ``"auto"`` (CUDA when present: site k on GPU k mod the number of GPUs), ``"cpu"``, ``"cuda:1"``.
    num_threads: torch CPU threads for this site's process (1 keeps results bit-identical and avoids
        oversubscription when the simulator runs several sites on one machine).
    dp_sgd: sample-level DP-SGD settings (``privacy.dp_sgd.DPSGDConfig``'s fields); None trains without DP.
    num_workers: DataLoader worker processes for the training batches (None: some on a GPU for datasets
        with per-sample CPU work, none otherwise). Results do not depend on it.
    precision: ``"fp32"`` or ``"bf16"`` (bfloat16 autocast of the forward passes, for GPUs).
    dataset_args: extra arguments of the dataset class, e.g. ``{"patch_size": [32, 96, 96]}``.
    model_args: extra arguments of the baseline model that do not change its parameters, e.g.
        ``{"mask_padding": false}`` (Fed-Camelyon16 as FLamby).
    """

    dataset: str = setting("str", help="FLamby dataset")
    data_root: str | None = setting(
        "str", None, help="the sites' data root (default: FLAMBY_FLARE_DATA, else the user cache)"
    )
    device: str = setting("str", "auto", help="auto (CUDA when present), cpu, cuda:N")
    num_threads: int = setting("int", 1, low=1, help="torch CPU threads per site process")
    dp_sgd: dict | None = setting("dict", None, help="sample-level DP-SGD settings (docs/privacy.md)")
    num_workers: int | None = setting(
        "int",
        None,
        low=0,
        help="the sites' DataLoader workers (default: some on a GPU for Fed-ISIC2019, none otherwise)",
    )
    precision: str = setting(
        "str", "fp32", choices=PRECISIONS, help="the sites' forward passes: bf16 autocasts them (GPUs)"
    )
    dataset_args: dict | None = setting(
        "dict",
        None,
        help="the sites' dataset arguments, a JSON object, e.g. "
        "'{\"patch_size\": [32, 96, 96]}' (Fed-KITS19; default: FLamby's)",
    )
    model_args: dict | None = setting(
        "dict",
        None,
        help="the sites' model arguments, a JSON object, e.g. "
        "'{\"mask_padding\": false}' (Fed-Camelyon16 as FLamby; default: FLamby's)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dataset not in DATASETS:
            raise SettingError(f"unknown dataset {self.dataset!r}; known datasets: {', '.join(DATASETS)}")
        if not _DEVICE.match(self.device):
            raise SettingError(f"device must be auto, cpu, cuda or cuda:<index>, got {self.device!r}")
        if self.dp_sgd is not None:
            from privacy.dp_sgd import DPSGDConfig

            DPSGDConfig.from_dict(self.dp_sgd)  # bad DP settings are refused here, at job start
            if self.precision != "fp32":
                raise SettingError("dp_sgd runs in fp32 only: Opacus' per-sample gradients do not support autocast")

    @property
    def dp(self):
        """The DP-SGD settings as ``privacy.dp_sgd.DPSGDConfig`` (None: no DP)."""
        from privacy.dp_sgd import DPSGDConfig

        return DPSGDConfig.from_dict(self.dp_sgd) if self.dp_sgd else None
