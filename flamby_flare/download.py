"""Verified, resumable acquisition of a dataset's raw files, from their public source or a local mirror.

A dataset folder counts as complete only when every file is present with its published SHA-256 and the
completion record (``.flamby_flare_complete.json``) written after that check. A file whose source publishes
no checksum (the IXI-Tiny and ISIC 2019 archives) is instead checked by the dataset's ``verify`` (its layout
and sample counts) on first download, and its SHA-256 is recorded then (trust on first use): from then on
it must keep that hash. A site of a real deployment
holds only its own center: where a dataset publishes one file per center (``center_files``), ``centers=[k]``
fetches and checks only center k's files. Re-running a download is
safe: verified files are kept, missing or corrupted ones are fetched again (into ``<file>.part``, then
renamed once verified, so an interrupted fetch never leaves a file that looks finished; a network fetch
continues an interrupted ``.part`` with an HTTP range request).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from flamby_flare.errors import CorruptedDatasetError, DatasetNotFoundError, DownloadError, FlambyFlareError
from flamby_flare.paths import dataset_dir, resolve_mirror
from flamby_flare.progress import Progress, interactive

COMPLETE_MARKER = ".flamby_flare_complete.json"
_CHUNK = 1 << 20
_SHOWN_BYTES = 8 << 20  # files from this size get a bytes bar on a terminal


@dataclass(frozen=True)
class RemoteFile:
    """One raw file: its name in the dataset folder (and mirror), public URL and SHA-256 (None: its source
    publishes none; see the module docstring)."""

    name: str
    url: str
    sha256: str | None


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset's raw files come from and under which terms."""

    name: str
    title: str
    files: tuple[RemoteFile, ...]
    license: str
    citation: str
    center_files: tuple[tuple[str, ...], ...] | None = None  # per center, the files it needs (None: all)
    # checks an unpublished-checksum file's content (raises ValueError with the reason): (file name, path) -> None
    verify: Callable[[str, Path], None] | None = None
    # files named by the dataset's own metadata files (e.g. KiTS19's case volumes, listed in its site file),
    # read from the dataset folder once ``files`` are there: (folder, centers) -> files
    listed: Callable[[Path, list[int] | None], tuple[RemoteFile, ...]] | None = None

    def files_for(self, centers: list[int] | None = None) -> tuple[RemoteFile, ...]:
        """The raw files that ``centers`` need (all files when None, or when the dataset is one file set)."""
        if centers is None or self.center_files is None:
            return self.files
        for c in centers:
            if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < len(self.center_files):
                raise FlambyFlareError(
                    f"--center must be one of {self.title}'s centers 0..{len(self.center_files) - 1}, got {c!r}"
                )
        names = {name for c in centers for name in self.center_files[c]}
        return tuple(f for f in self.files if f.name in names)

    def files_in(self, folder: Path, centers: list[int] | None = None) -> tuple[RemoteFile, ...]:
        """``files_for(centers)``, then the files they list (once the listing files are in ``folder``)."""
        static = self.files_for(centers)
        if self.listed is None or not all((folder / f.name).is_file() for f in static):
            return static
        return static + self.listed(folder, centers)

    command: str | None = None  # how to make the files when they are not downloaded (a generated dataset)

    @property
    def download_command(self) -> str:
        return self.command or f"flamby-flare download {self.name}"


def listed_in(table: str, item: str, center: str, files: Callable[[str], tuple[RemoteFile, ...]]):
    """A ``DatasetSource.listed``: ``files(value)`` for each ``item`` value of the CSV ``table`` whose ``center``
    column is one of the wanted centers (all rows when None)."""

    def listed(folder: Path, centers: list[int] | None) -> tuple[RemoteFile, ...]:
        import pandas as pd

        rows = pd.read_csv(folder / table)
        if centers is not None:
            rows = rows[rows[center].isin(centers)]
        return tuple(f for value in rows[item] for f in files(value))

    return listed


def sha256sum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=256)
def _cached_sha256(path: str, stat: tuple[int, ...]) -> str:
    return sha256sum(Path(path))


@lru_cache(maxsize=64)
def _read_record(path: str, mtime_ns: int) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def completion_record(folder: Path) -> dict:
    """The dataset folder's completion record ({} when there is none), read once per version of the file."""
    path = folder / COMPLETE_MARKER
    try:
        return _read_record(str(path), path.stat().st_mtime_ns)
    except FileNotFoundError:
        return {}


def recorded_sha256(folder: Path) -> dict[str, str]:
    """The hashes the completion record holds (for files without a published one: trust on first use)."""
    return completion_record(folder).get("files", {})


def expected_sha256(remote: RemoteFile, folder: Path) -> str | None:
    """The published SHA-256, else the one recorded at the first verified download (None: never downloaded)."""
    return remote.sha256 or recorded_sha256(folder).get(remote.name)


REHASH_AT_START_BYTES = 256 << 20  # a site's files up to this size together are re-hashed at every start


def _stat(path: Path) -> list[int]:
    """What the completion record keeps of a verified file: size, modification time, inode change time and
    inode. Putting a modification time back (``touch -d``, ``os.utime``) changes the inode change time, which
    only the system clock sets, so an edit with its mtime restored is seen too."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def file_ok(
    path: Path, expected_sha256: str | None, verified_stat: list[int] | None = None, rehash: bool = False
) -> bool:
    """True when ``path`` exists with the expected content. A file whose stat (``_stat``: size, mtime, ctime,
    inode) is the one it had when its hash was verified (``verified_stat``, from the completion record) is not
    hashed again: re-hashing hundreds of GB of slides or CT series at every start would cost minutes. Limit:
    someone who can set the system clock (root) can forge the stat; ``flamby-flare verify NAME`` re-hashes
    everything. Hashes are also cached per stat within a process, unless ``rehash``."""
    try:
        stat = _stat(path)
    except FileNotFoundError:
        return False
    if expected_sha256 is None:
        return False
    if rehash:
        return sha256sum(path) == expected_sha256
    if verified_stat is not None and list(verified_stat) == stat:
        return True
    return _cached_sha256(str(path), tuple(stat)) == expected_sha256


def check_dataset_files(
    source: DatasetSource, folder: Path, centers: list[int] | None = None, rehash_up_to: int = 0
) -> None:
    """Raise a one-line error naming the download command unless every raw file (of ``centers``) verifies.
    When the files total at most ``rehash_up_to`` bytes, each is re-hashed (no stat shortcut)."""
    stats = completion_record(folder).get("stats", {})
    files = source.files_in(folder, centers)
    rehash = (
        bool(rehash_up_to)
        and sum((folder / f.name).stat().st_size for f in files if (folder / f.name).is_file()) <= rehash_up_to
    )
    for remote in files:
        path = folder / remote.name
        if not path.is_file():
            raise DatasetNotFoundError(f"{source.title} not found: {path} is missing; run `{source.download_command}`")
        expected = expected_sha256(remote, folder)
        if expected is None:
            raise DatasetNotFoundError(f"{source.title}: {path} was never verified; run `{source.download_command}`")
        if not file_ok(path, expected, stats.get(remote.name), rehash=rehash):
            raise CorruptedDatasetError(
                f"{source.title}: {path} is corrupted (SHA-256 mismatch); "
                f"run `{source.download_command}` to fetch it again"
            )


def is_complete(source: DatasetSource, folder: Path, centers: list[int] | None = None) -> bool:
    """True when the completion record exists and every file (of ``centers``) still verifies."""
    if not (folder / COMPLETE_MARKER).is_file():
        return False
    try:
        check_dataset_files(source, folder, centers)
    except (DatasetNotFoundError, CorruptedDatasetError):
        return False
    return True


def download(
    source: DatasetSource,
    data_root: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
    centers: list[int] | None = None,
    accept_new_checksums: bool = False,
) -> Path:
    """Fetch, verify and record ``source`` (only ``centers``' files when given) under ``<data root>/<name>``;
    returns that folder. A file whose source publishes no checksum keeps the SHA-256 recorded at its first
    download: a fetched one that differs is refused, unless ``accept_new_checksums`` (then it says so)."""
    if source.command:
        raise DownloadError(f"{source.title} is generated, not downloaded: run `{source.command}`")
    folder = dataset_dir(source.name, data_root)
    mirror_dir = resolve_mirror(mirror)
    log(f"{source.title} -> {folder}")
    log(f"  license: {source.license}")
    log(f"  cite: {source.citation}")
    if is_complete(source, folder, centers):
        log("  already downloaded and verified")
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    previous = completion_record(folder)  # kept until the new one is written: a failed download keeps the pins
    recorded = dict(previous.get("files", {}))
    hashes: dict[str, str] = {}
    files = source.files_for(centers)

    def fetch(batch, say):
        return _fetch_all(source, batch, folder, recorded, hashes, mirror_dir, say, accept_new_checksums)

    fetch(files, log)
    if source.listed is not None:  # the files that the ones just fetched list: one progress line, not one per file
        listed = source.listed(folder, centers)
        progress = Progress(f"{len(listed)} listed files", len(listed), log, unit="file")
        fetch(listed, lambda _: progress(len(hashes) - len(files)))
        files += listed
    write_completion_record(
        source,
        folder,
        {**recorded, **hashes},
        hashes,
        previous,
        centers=centers,
        mirror=str(mirror_dir) if mirror_dir else None,
    )
    log(f"  complete: {len(files)} files verified")
    return folder


def write_completion_record(
    source: DatasetSource,
    folder: Path,
    files: dict[str, str],
    new: dict[str, str],
    previous: dict | None = None,
    **extra,
) -> None:
    """Record ``folder`` as holding ``source``'s verified ``files`` (name -> SHA-256); ``new``: those just
    written, whose stat is taken now (the others keep theirs). Written last and atomically: a folder without
    it is not a dataset."""
    previous = previous or {}
    record = {
        "dataset": source.name,
        "files": files,  # the files of earlier downloads (other centers) keep their pins
        "stats": {**previous.get("stats", {}), **{name: _stat(folder / name) for name in new}},
        **extra,
        "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = folder / (COMPLETE_MARKER + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, folder / COMPLETE_MARKER)


def _fetch_all(
    source: DatasetSource,
    files: tuple[RemoteFile, ...],
    folder: Path,
    recorded: dict[str, str],
    hashes: dict[str, str],
    mirror_dir: Path | None,
    log: Callable[[str], None],
    accept_new_checksums: bool = False,
) -> None:
    """Fetch and verify each of ``files`` not already verified in ``folder``; their hashes go into ``hashes``."""
    for remote in files:
        target = folder / remote.name
        expected = remote.sha256 or recorded.get(remote.name)
        if file_ok(target, expected):
            log(f"  {remote.name}: verified")
            hashes[remote.name] = expected
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        origin = _fetch(remote, source.name, part, mirror_dir, log)
        hashes[remote.name] = _verify(
            source, remote, part, origin, recorded.get(remote.name), accept_new_checksums, log
        )
        os.replace(part, target)
        log(f"  {remote.name}: fetched from {origin}, verified")


def _verify(
    source: DatasetSource,
    remote: RemoteFile,
    part: Path,
    origin: str,
    pinned: str | None = None,
    accept_new_checksums: bool = False,
    log: Callable[[str], None] = print,
) -> str:
    """Check a fetched ``part`` (published SHA-256, else the SHA-256 pinned at its first download and the
    dataset's ``verify``); returns its SHA-256. A file that fails is deleted: nothing unverified is kept."""
    digest = sha256sum(part)
    if remote.sha256 is not None:
        if digest != remote.sha256:
            part.unlink()
            raise DownloadError(f"{remote.name} from {origin} does not match its published SHA-256; nothing was kept")
        return digest
    if pinned is not None and digest != pinned:
        if not accept_new_checksums:
            part.unlink()
            raise DownloadError(
                f"{remote.name} from {origin} is not the file this data root verified at its first download (its "
                f"SHA-256 differs from the pinned one); nothing was kept. If its source really changed it, run "
                f"`{source.download_command} --accept-new-checksums`"
            )
        log(f"  {remote.name}: NEW SHA-256 accepted (--accept-new-checksums): {pinned[:16]}... -> {digest[:16]}...")
    try:
        if source.verify is None:
            raise ValueError("its source publishes no checksum and the dataset defines no content check")
        source.verify(remote.name, part)
    except (ValueError, OSError) as exc:
        part.unlink()
        raise DownloadError(
            f"{remote.name} from {origin} is not a valid {source.title} file: {exc}; nothing was kept"
        ) from None
    return digest


def _copy(src: Path, part: Path, name: str, log) -> None:
    """``src`` to ``part``; a large file on a terminal with a bytes bar."""
    size = src.stat().st_size
    if size < _SHOWN_BYTES or not interactive(log):
        shutil.copyfile(src, part)
        return
    progress, done = Progress(name, size, log, unit="B"), 0
    with open(src, "rb") as source, open(part, "wb") as out:
        for block in iter(lambda: source.read(_CHUNK), b""):
            out.write(block)
            done += len(block)
            progress(done)
    progress.close()


def _fetch(remote: RemoteFile, dataset: str, part: Path, mirror_dir: Path | None, log) -> str:
    """Copy or download one file into ``part``; returns where it came from. A network fetch continues an
    existing ``part`` where it stopped when the server allows range requests."""
    if mirror_dir is not None:
        src = mirror_dir / dataset / remote.name
        if not src.is_file():
            raise DownloadError(f"mirror {mirror_dir} has no {dataset}/{remote.name}")
        _copy(src, part, remote.name, log)
        return str(src)
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(remote.url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            resumed = have and response.status == 206
            if have:
                log(
                    f"  {remote.name}: "
                    + (f"resuming after {have >> 20} MiB" if resumed else "server cannot resume; restarting")
                )
            done = have if resumed else 0
            total = int(response.headers.get("Content-Length") or 0) + done
            progress = Progress(remote.name, total, log, unit="B", initial=done) if total >= _SHOWN_BYTES else None
            with open(part, "ab" if resumed else "wb") as out:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress(done)
            if progress:
                progress.close()
    except OSError as exc:  # the .part stays: the next run continues it
        raise DownloadError(
            f"could not fetch {remote.url}: {exc}; offline? use --mirror DIR or FLAMBY_FLARE_MIRROR"
        ) from exc
    return remote.url


def verify(source: DatasetSource, folder: Path, log: Callable[[str], None] = print) -> list[str]:
    """Re-hash every raw file of ``source`` in ``folder`` that its completion record lists (no stat shortcut);
    returns the names that are missing or whose SHA-256 differs from the published or pinned one."""
    record = completion_record(folder)
    if not record:
        raise DatasetNotFoundError(
            f"{source.title}: {folder} holds no verified download; run `{source.download_command}`"
        )
    bad = []
    for name in sorted(record.get("files", {})):
        remote = next((f for f in source.files_in(folder) if f.name == name), None)
        expected = (remote.sha256 if remote is not None else None) or record["files"][name]
        path = folder / name
        ok = path.is_file() and sha256sum(path) == expected
        if not ok:
            bad.append(name)
        log(f"  {name}: {'ok' if ok else ('MISSING' if not path.is_file() else 'CORRUPTED (SHA-256 differs)')}")
    return bad


def locate_dataset(
    source: DatasetSource, data_path: str | os.PathLike | None = None, centers: list[int] | None = None
) -> Path:
    """The verified folder of ``source``'s files (those ``centers`` need): ``data_path`` itself, else
    ``<data root>/<name>``."""
    folder = Path(data_path) if data_path is not None else dataset_dir(source.name)
    check_dataset_files(source, folder, centers)
    return folder.resolve()
