"""DP end to end in NVFlare's simulator: DP-SGD and client-level DP together on Fed-Heart-Disease, with
live site processes (-t 4) and with one swapped process (-t 1): the accountants live on disk, so the
ledger and the model are the same bit for bit, and the ledger is the one Opacus computes."""

import csv
import json

import pytest
import torch

from flamby_flare.cli import main
from flamby_flare.jobs import write_job
from flamby_flare.results import PRIVACY_COLUMNS
from tests import golden
from tests.simulator import SWAPPED, pinned, read_streams, run_dir, run_live_and_swapped

pytestmark = pytest.mark.simulator
N_TRAIN = {"site-1": 199, "site-2": 172, "site-3": 30, "site-4": 85}


@pytest.fixture(scope="module")
def dp_runs(tmp_path_factory, data_root):
    root = tmp_path_factory.mktemp("dp")
    job = write_job(
        "fed_heart_disease",
        "fedavg",
        root,
        num_rounds=3,
        num_updates=20,
        seed=11,
        dp_sgd={"max_grad_norm": 1.1, "noise_multiplier": 1.0, "delta": 1e-3},
        client_dp={"clip_norm": 0.5, "noise_multiplier": 0.5, "delta": 1e-3},
    )
    return {threads: run_dir(ws) for threads, ws in run_live_and_swapped(job, root, data_root).items()}


def _epsilon(sigma, q, steps, delta=1e-3):
    from opacus.accountants import RDPAccountant  # here: Opacus costs a pytest worker 3 CPU-s to import

    acc = RDPAccountant()
    acc.history = [(sigma, q, steps)]
    return acc.get_epsilon(delta=delta)


def test_the_ledger_is_opacus_accounting_of_what_each_site_did(dp_runs):
    summary = json.loads((dp_runs[4] / "summary.json").read_text())
    assert list(summary["privacy"]) == list(N_TRAIN)
    for site, records in summary["privacy"].items():
        dp_sgd, client = records
        assert dp_sgd["mechanism"] == "dp-sgd" and client["mechanism"] == "client-dp"
        assert dp_sgd["steps"] == 60 and dp_sgd["sample_rate"] == 4 / N_TRAIN[site]
        assert dp_sgd["epsilon"] == pytest.approx(_epsilon(1.0, 4 / N_TRAIN[site], 60), rel=1e-12)
        assert client["steps"] == 3 and client["epsilon"] == pytest.approx(_epsilon(0.5, 1.0, 3), rel=1e-12)
    # every round's ledger grows; the loss never left the sites
    rounds = summary["history"]
    assert [r["privacy"]["site-3"][1]["steps"] for r in rounds] == [1, 2, 3]
    assert all(r["train_loss"] is None for r in rounds)
    with open(dp_runs[4] / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(r[c] != "" for r in rows for c in PRIVACY_COLUMNS)
    assert float(rows[2]["dp_sgd_epsilon"]) == summary["privacy"]["site-3"][0]["epsilon"]
    assert float(rows[0]["client_dp_clip_norm"]) == 0.5
    golden.check("simulator/heart_fedavg_dp_sgd_client_dp_seed11", pinned(dp_runs[4]))


def test_the_accountants_survive_swapped_site_processes(dp_runs):
    a, b = (json.loads((dp_runs[t] / "summary.json").read_text()) for t in (4, SWAPPED))
    assert a["privacy"] == b["privacy"] and a["per_site"] == b["per_site"]
    ma, mb = (torch.load(dp_runs[t] / "FL_global_model.pt")["model"] for t in (4, SWAPPED))
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def test_the_epsilon_spent_streams_per_site_and_round_whatever_t(dp_runs):
    summary = json.loads((dp_runs[4] / "summary.json").read_text())
    live, swapped = (read_streams(dp_runs[t]) for t in (4, SWAPPED))
    for site in N_TRAIN:
        for mechanism, index in (("dp-sgd", 0), ("client-dp", 1)):
            expected = {r["round"]: r["privacy"][site][index]["epsilon"] for r in summary["history"]}
            assert live[site][f"epsilon/{mechanism}"] == pytest.approx(expected, rel=1e-6)
        assert "train_loss" not in live[site]  # withheld under DP: not streamed either
    without_times = lambda s: {k: {t: v for t, v in tags.items() if t != "round_seconds"} for k, tags in s.items()}  # noqa: E731
    assert without_times(live) == without_times(swapped)


def test_the_table_shows_the_privacy_spent(dp_runs, capsys):
    assert main(["results", str(dp_runs[4])]) == 0
    out = capsys.readouterr().out
    assert "privacy spent" in out and "site-3   dp-sgd eps" in out and "client-dp eps" in out
