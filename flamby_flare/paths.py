"""Where datasets live on disk.

Data root resolution: explicit argument > environment ``FLAMBY_FLARE_DATA`` > a per-user cache folder
(``$XDG_CACHE_HOME/flamby_flare`` or ``~/.cache/flamby_flare``). An NVFlare site (POC or production) can
also name its own data root in its startup kit, ``<site workspace>/local/flamby_flare.json`` =
``{"data_root": "/data/flamby"}``, which the site executor uses before the environment: each hospital says
where its data is, and the job stays the same everywhere.

Run state that must outlive a job (the controller's per-round checkpoint, a site's SCAFFOLD control) lives
under the state root: ``FLAMBY_FLARE_STATE`` > ``$XDG_STATE_HOME/flamby_flare`` > ``~/.local/state/flamby_flare``
(a site may name its own ``state_dir`` in ``local/flamby_flare.json``). NVFlare's simulator wipes its
workspace at every start, so the workspace cannot hold it. Dataset ``NAME`` lives in
``<data root>/NAME/``, laid out like the mirror (``<mirror>/NAME/<file>``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from flamby_flare.errors import FlambyFlareError

DATA_ENV = "FLAMBY_FLARE_DATA"
MIRROR_ENV = "FLAMBY_FLARE_MIRROR"
STATE_ENV = "FLAMBY_FLARE_STATE"
SITE_CONFIG = "flamby_flare.json"


# A run's metric streams: TensorBoard event files in its run directory (controllers/tracking.py), or an
# MLflow store there (controllers/mlflow_tracking.py).
METRIC_STREAMS_FOLDER = "tb_events"
MLFLOW_STORE = "mlflow.db"


def check_tracking_uri(uri: str | None) -> None:
    """An MLflow tracking server's address: ``http(s)://host[:port][/path]``, or None (the run directory's
    store). Anything else (``file:``, ``sqlite:``, a path) is refused: a job file must not choose where the
    server writes."""
    if uri is None:
        return
    match = (
        re.fullmatch(r"https?://[A-Za-z0-9.\-]+(?::([0-9]{1,5}))?(/[A-Za-z0-9._~\-/]*)?", uri)
        if isinstance(uri, str)
        else None
    )
    if match is None or (match.group(1) is not None and not 1 <= int(match.group(1)) <= 65535):
        shown = uri if isinstance(uri, str) and len(uri) <= 80 else type(uri).__name__
        raise FlambyFlareError(
            f"tracking_uri must be an http:// or https:// address of an MLflow server (a port 1-65535), got {shown!r}"
        )


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """The folder holding all downloaded datasets."""
    if data_root:
        return Path(data_root).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "flamby_flare"


def dataset_dir(name: str, data_root: str | os.PathLike | None = None) -> Path:
    """The folder holding dataset ``name``'s files."""
    return resolve_data_root(data_root) / name


def resolve_mirror(mirror: str | os.PathLike | None = None) -> Path | None:
    """A local mirror folder (argument > ``FLAMBY_FLARE_MIRROR``), or None for the network."""
    value = mirror or os.environ.get(MIRROR_ENV)
    return Path(value).expanduser() if value else None


def resolve_state_root() -> Path:
    """The folder for run state that outlives a job: ``FLAMBY_FLARE_STATE`` > the per-user state folder."""
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV]).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "flamby_flare"


def site_setting(site_config_dir: str | os.PathLike, key: str) -> str | None:
    """A folder a site names in ``<site_config_dir>/flamby_flare.json`` (its startup kit's ``local/``),
    e.g. ``data_root``; relative paths are relative to that file. None when it names none."""
    path = Path(site_config_dir) / SITE_CONFIG
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text()).get(key)
    except (json.JSONDecodeError, AttributeError) as exc:
        raise FlambyFlareError(f"{path} is not a JSON object of settings: {exc}") from None
    return str(Path(path.parent, value).resolve()) if value else None


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def plain_name(text: str, limit: int = 180) -> str:
    """``text`` made a plain file name (``is_plain_name``): letters, digits, ``.``, ``_``, ``-`` (others become
    ``_``, ``..`` becomes ``.``), starting with a letter or digit, at most ``limit`` characters (180: room for
    a suffix such as a run id's)."""
    name = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "_", str(text))).lstrip("._-")[:limit]
    return name or "run"


def is_plain_name(value: object) -> bool:
    """Whether ``value`` names a direct child folder and nothing else: letters, digits, ``.``, ``_``, ``-``, not
    starting with a dot or a dash, no ``..``, at most 200 characters."""
    return isinstance(value, str) and bool(_PLAIN_NAME.match(value)) and ".." not in value


def run_folder(root: str | os.PathLike, run_key: str) -> Path:
    """``root/<run key>``. The run key comes from the server: it must be a plain name (letters, digits,
    ``.``, ``_``, ``-``, not starting with a dot), so that the folder is a direct child of ``root`` whatever
    the server sends; anything else is refused in one line. An empty key is ``root`` itself (tests, and runs
    without a server)."""
    if run_key == "":
        return Path(root)
    if not is_plain_name(run_key):
        raise FlambyFlareError(
            "the server sent a run key that is not a plain name (letters, digits, '.', '_', '-'); "
            "this site keeps its state only in folders of its own state root"
        )
    folder = Path(root) / run_key
    if folder.resolve().parent != Path(root).resolve():
        raise FlambyFlareError("the run key does not name a folder of this site's state root")
    return folder


def check_writable(folder: str | os.PathLike, what: str) -> Path:
    """``folder`` (created if needed), or a one-line error naming it when it cannot be written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write_check_{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise FlambyFlareError(
            f"the {what} {folder} is not writable ({exc.strerror or exc}); give it write access or point it elsewhere"
        ) from None
    return folder
