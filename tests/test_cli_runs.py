"""`khrbm runs` as a user meets it: list with filters, show (JSON with the change log), compare, export, import —
on a registry filled by real `khrbm train` runs."""
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BARS = ["--dataset", "bars", "--n-hidden", 24, "--train-size", 1000, "--val-size", 300, "--epochs", 3,
        "--no-progress"]


def khrbm(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "khrbm", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ})


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Two recorded runs: plain (#1), and KH_BU (#2) whose lesson drops Δ to 0 at step 12."""
    tmp = tmp_path_factory.mktemp("runs")
    path = tmp / "registry.sqlite"
    lesson = tmp / "lesson.json"
    lesson.write_text(json.dumps([{"at": {"step": 12}, "set": {"delta": 0.0}, "caption": "Δ → 0"}]))
    for name, flags in (("plain", []), ("kh", ["--kh-mode", "bu", "--eps0", 0.02, "--lesson", lesson])):
        proc = khrbm("train", *BARS, *flags, "--out", tmp / name, "--registry", path)
        assert proc.returncode == 0, proc.stderr
    return path


def runs(registry, *args):
    proc = khrbm("runs", *args, "--registry", registry)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_list_shows_every_run_newest_first_and_filters(registry):
    table = runs(registry, "list").splitlines()
    assert table[0].split()[:4] == ["ID", "STARTED", "SOURCE", "STATE"]
    assert [line.split()[0] for line in table[1:]] == ["2", "1"]
    assert "KH_BU ε0=0.02 Δ=0.4" in table[1] and "plain" in table[2] and "3.00" in table[1]
    listed = json.loads(runs(registry, "list", "--json", "--where", "kh_mode=bu", "--state", "finished"))
    assert [r["id"] for r in listed] == [2] and listed[0]["config"]["eps0"] == 0.02
    assert json.loads(runs(registry, "list", "--json", "--where", "n_hidden=25")) == []
    assert json.loads(runs(registry, "list", "--json", "--source", "app")) == []
    bad = khrbm("runs", "list", "--where", "n_hiden=24", "--registry", registry)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "n_hiden" in bad.stderr


def test_show_json_holds_the_change_log_and_the_final_metrics(registry):
    record = json.loads(runs(registry, "show", "2", "--json"))
    assert record["changes"] == [{"step": 12, "epoch": 1.2, "field": "delta", "old": 0.4, "new": 0.0}]
    assert record["state"] == "finished" and record["source"] == "train" and record["steps"] == 30
    result = json.loads((Path(record["out_dir"]) / "result.json").read_text())
    assert record["final"]["val_mse"] == record["points"]["val_mse"][-1] == result["final"]["val_mse"]
    assert record["points"]["step"][0] == 0 and record["points"]["step"][-1] == 30
    text = runs(registry, "show", "2")
    assert "step      12 (epoch 1.20)  delta: 0.4 → 0" in text and "state      finished" in text
    missing = khrbm("runs", "show", "99", "--registry", registry)
    assert missing.returncode == 2 and "no run matches '99'" in missing.stderr


def test_compare_puts_config_differences_and_final_metrics_side_by_side(registry):
    lines = runs(registry, "compare", "1", "2").splitlines()
    rows = {line.split("  ")[0]: line for line in lines if not line.startswith(" ")}
    change = lines[lines.index("— live changes —") + 1]
    assert lines[0].split() == ["#1", "#2"] and change.split() == ["epoch", "1.20:", "delta", "0.4→0"]
    assert change.index("epoch") == lines[0].index("#2")                   # in #2's column
    assert rows["kh_mode"].split()[1:] == ["off", "bu"] and rows["eps0"].split()[1:] == ["0.04", "0.02"]
    assert "n_hidden" not in rows and "seed" not in rows                  # only what differs
    assert rows["val_mse"].split()[1:] == [f"{v:.4f}" for v in _finals(registry, "val_mse")]
    data = json.loads(runs(registry, "compare", "1", "2", "--json"))
    assert data["config"] == {"kh_mode": ["off", "bu"], "eps0": [0.04, 0.02]}
    assert [len(c) for c in data["changes"]] == [0, 1]


def _finals(registry, key):
    return [json.loads(runs(registry, "show", i, "--json"))["final"][key] for i in ("1", "2")]


def test_export_writes_json_and_csv_and_import_rebuilds_another_registry(registry, tmp_path):
    exported = json.loads(runs(registry, "export"))
    assert [r["id"] for r in exported["runs"]] == [2, 1] and exported["runs"][0]["changes"][0]["field"] == "delta"
    rows = list(csv.DictReader(io.StringIO(runs(registry, "export", "--format", "csv"))))
    assert [(r["id"], r["config.kh_mode"], r["state"]) for r in rows] == [("2", "bu", "finished"),
                                                                        ("1", "off", "finished")]
    assert float(rows[0]["final.val_mse"]) == exported["runs"][0]["final"]["val_mse"]
    runs(registry, "export", "--out", tmp_path / "all.json")
    assert json.loads((tmp_path / "all.json").read_text())["runs"] == exported["runs"]

    other = tmp_path / "other.sqlite"
    folders = [r["out_dir"] for r in reversed(exported["runs"])]
    out = khrbm("runs", "import", *folders, "--registry", other)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("finished at epoch 3.00 (train)") == 2
    again = json.loads(khrbm("runs", "export", "--registry", other).stdout)["runs"]
    assert {r["uid"]: (r["final"], r["changes"], r["config"]) for r in again} == \
        {r["uid"]: (r["final"], r["changes"], r["config"]) for r in exported["runs"]}


def test_a_corrupt_registry_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"garbage" * 1000)
    proc = khrbm("runs", "list", "--registry", bad)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "not a readable khrbm registry" in proc.stderr and str(bad) in proc.stderr
