"""Acquisition: verified, resumable, re-runnable downloads from a mirror, and clear errors on bad data."""

import hashlib
import json
import subprocess
import sys

import pytest

from flamby_flare.cli import main
from flamby_flare.datasets import fed_heart_disease as heart
from flamby_flare.datasets import get_dataset
from flamby_flare.download import COMPLETE_MARKER, download, is_complete
from flamby_flare.errors import CorruptedDatasetError, DatasetNotFoundError, DownloadError, UnknownDatasetError
from flamby_flare.paths import resolve_data_root

SOURCE = heart.SOURCE


def _download(root, mirror, log=None):
    lines = []
    folder = download(SOURCE, data_root=root, mirror=mirror, log=lines.append)
    return folder, lines


def test_download_verifies_and_records_completion(tmp_path, mirror):
    folder, lines = _download(tmp_path, mirror)
    assert folder == tmp_path / "fed_heart_disease"
    assert is_complete(SOURCE, folder)
    record = json.loads((folder / COMPLETE_MARKER).read_text())
    assert record["files"] == {f.name: f.sha256 for f in SOURCE.files}
    assert any("license: CC BY 4.0" in line for line in lines)
    assert any("cite:" in line for line in lines)
    assert not list(folder.glob("*.part"))


def test_rerun_is_a_no_op(tmp_path, mirror):
    folder, _ = _download(tmp_path, mirror)
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    _, lines = _download(tmp_path, mirror)
    assert any("already downloaded and verified" in line for line in lines)
    assert mtimes == {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_corrupted_file_is_detected_and_fetched_again(tmp_path, mirror):
    folder, _ = _download(tmp_path, mirror)
    target = folder / "processed.va.data"
    target.write_bytes(target.read_bytes()[:-10])
    assert not is_complete(SOURCE, folder)
    with pytest.raises(CorruptedDatasetError, match="processed.va.data.*flamby-flare download fed_heart_disease"):
        heart.FedHeartDisease(3, data_path=folder)
    _, lines = _download(tmp_path, mirror)
    assert any(line.startswith("  processed.va.data: fetched") for line in lines)
    assert any(line.startswith("  processed.cleveland.data: verified") for line in lines)
    assert is_complete(SOURCE, folder) and len(heart.FedHeartDisease(3, data_path=folder)) == 85


def test_interrupted_download_is_redone(tmp_path, mirror):
    """A partial download (no completion record, a stale .part, a missing file) is completed on re-run."""
    folder, _ = _download(tmp_path, mirror)
    (folder / COMPLETE_MARKER).unlink()
    (folder / "processed.hungarian.data").unlink()
    (folder / "processed.hungarian.data.part").write_bytes(b"half a file")
    assert not is_complete(SOURCE, folder)
    _download(tmp_path, mirror)
    assert is_complete(SOURCE, folder)
    assert not (folder / "processed.hungarian.data.part").exists()


def test_bad_mirror_keeps_nothing(tmp_path, mirror):
    fake = tmp_path / "mirror" / "fed_heart_disease"
    fake.mkdir(parents=True)
    for f in SOURCE.files:
        (fake / f.name).write_bytes((mirror / "fed_heart_disease" / f.name).read_bytes())
    (fake / "processed.switzerland.data").write_text("tampered\n")
    with pytest.raises(DownloadError, match="processed.switzerland.data .* does not match its published SHA-256"):
        download(SOURCE, data_root=tmp_path / "data", mirror=tmp_path / "mirror", log=lambda _: None)
    folder = tmp_path / "data" / "fed_heart_disease"
    assert not (folder / "processed.switzerland.data").exists() and not (folder / COMPLETE_MARKER).exists()
    with pytest.raises(DownloadError, match="has no fed_tcga_brca/brca.csv"):
        download(
            get_dataset("fed_tcga_brca").SOURCE,
            data_root=tmp_path / "data",
            mirror=tmp_path / "mirror",
            log=lambda _: None,
        )


def test_missing_data_names_the_download_command(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="run `flamby-flare download fed_heart_disease`"):
        heart.FedHeartDisease(0, data_path=tmp_path)


def test_data_root_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("FLAMBY_FLARE_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("FLAMBY_FLARE_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_root() == tmp_path / "cache" / "flamby_flare"


def test_unknown_dataset():
    with pytest.raises(
        UnknownDatasetError, match="unknown dataset 'fed_mnist'; known datasets: fed_camelyon16, .*fed_heart_disease"
    ):
        get_dataset("fed_mnist")


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "flamby_flare.cli", *args], capture_output=True, text=True, env=env)


def test_cli_errors_are_one_line_and_non_zero(tmp_path, mirror, monkeypatch):
    res = _cli("download", "fed_mnist", "--mirror", str(mirror), "--data-root", str(tmp_path))
    assert res.returncode == 2  # a usage error, refused by the parser
    (line,) = res.stderr.strip().splitlines()
    assert (
        line.startswith("error: argument NAME: unknown dataset 'fed_mnist'; known datasets: ")
        and "fed_tcga_brca" in line
    )
    assert line.endswith("(see `flamby-flare download --help`)")
    res = _cli("download", "fed_tcga_brca", "--mirror", str(tmp_path / "nowhere"), "--data-root", str(tmp_path))
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "has no fed_tcga_brca/brca.csv" in res.stderr
    res = _cli("results", str(tmp_path))
    assert res.returncode == 1 and res.stderr.startswith("error: no summary.json under")


def test_cli_download_from_mirror_env(tmp_path, mirror, monkeypatch):
    monkeypatch.setenv("FLAMBY_FLARE_MIRROR", str(mirror))
    monkeypatch.setenv("FLAMBY_FLARE_DATA", str(tmp_path))
    assert main(["download", "fed_tcga_brca"]) == 0
    assert is_complete(get_dataset("fed_tcga_brca").SOURCE, tmp_path / "fed_tcga_brca")


def test_one_center_only(tmp_path, mirror):
    """A hospital fetches only its own file, and its center loads from it; other centers refuse, naming the file."""
    folder = download(SOURCE, data_root=tmp_path, mirror=mirror, centers=[2], log=lambda _: None)
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["processed.switzerland.data"]
    assert is_complete(SOURCE, folder, centers=[2]) and not is_complete(SOURCE, folder)
    assert len(heart.FedHeartDisease(2, data_path=folder)) == 30
    with pytest.raises(DatasetNotFoundError, match="processed.cleveland.data is missing"):
        heart.FedHeartDisease(0, data_path=folder)
    with pytest.raises(DatasetNotFoundError):
        heart.FedHeartDisease(pooled=True, data_path=folder)


def test_network_download_resumes_an_interrupted_part(tmp_path, monkeypatch):
    """A .part left by an interrupted network fetch is continued with an HTTP range request."""
    import dataclasses
    import functools
    import http.server
    import threading

    from flamby_flare.download import RemoteFile, sha256sum

    payload = bytes(range(256)) * 4096  # 1 MiB
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "blob.bin").write_bytes(payload)
    ranges = []

    class RangeHandler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
            ranges.append(start)
            body = payload[start:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(RangeHandler, directory=tmp_path / "srv")
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.delenv("FLAMBY_FLARE_MIRROR", raising=False)
        url = f"http://127.0.0.1:{server.server_address[1]}/blob.bin"
        source = dataclasses.replace(
            SOURCE,
            name="blob",
            files=(RemoteFile("blob.bin", url, hashlib.sha256(payload).hexdigest()),),
            center_files=None,
        )
        folder = tmp_path / "data" / "blob"
        folder.mkdir(parents=True)
        (folder / "blob.bin.part").write_bytes(payload[:300_000])  # what an interrupted fetch left
        lines = []
        download(source, data_root=tmp_path / "data", log=lines.append)
        assert ranges == [300_000] and any("resuming after" in line for line in lines)
        assert sha256sum(folder / "blob.bin") == hashlib.sha256(payload).hexdigest()
        assert not (folder / "blob.bin.part").exists()
    finally:
        server.shutdown()


def test_verified_files_are_not_hashed_again(tmp_path, mirror, monkeypatch):
    """Opening a dataset re-checks its files by size and modification time against the completion record
    (re-hashing hundreds of GB at every start would cost minutes); a changed file is hashed and refused."""
    import flamby_flare.download as dl

    folder, _ = _download(tmp_path, mirror)

    def no_hashing(*args):
        raise AssertionError("a verified, unchanged file was hashed again")

    monkeypatch.setattr(dl, "_cached_sha256", no_hashing)
    assert is_complete(SOURCE, folder)
    heart.FedHeartDisease(0, data_path=folder)
    monkeypatch.undo()
    with open(folder / "processed.va.data", "a") as f:
        f.write("1,1,1,1,1,1,1,1,1,1,1,1,1,1\n")
    with pytest.raises(CorruptedDatasetError, match="processed.va.data is corrupted"):
        heart.FedHeartDisease(3, data_path=folder)
