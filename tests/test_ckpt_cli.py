"""`python -m ckpt list RUN_DIR [--last N] [--json]` and `prune`."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime

from ckpt.__main__ import main
from tests.ckpt_support import save


def test_list_prints_the_table_of_every_checkpoint(tmp_path, capsys):
    for step in (9, 10, 11):
        save(tmp_path, step, quality=0.725, loss=0.0145)
    assert main(["list", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "AVAILABLE CHECKPOINTS (All 3):" in out
    assert "3    11           regular      72.5%        0.0145" in out


def test_list_last_n_shows_only_the_newest(tmp_path, capsys):
    for step in (1, 2, 3):
        save(tmp_path, step)
    assert main(["list", str(tmp_path), "--last", "2"]) == 0
    rows = [line.split()[1] for line in capsys.readouterr().out.splitlines()[5:-1]]
    assert rows == ["2", "3"]


def test_list_json_is_a_list_with_iso_dates(tmp_path, capsys):
    save(tmp_path, 5, quality=0.5)
    assert main(["list", str(tmp_path), "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert (entry["step"], entry["quality"], entry["status"]) == (5, 0.5, "ok")
    assert (
        datetime.fromisoformat(entry["timestamp"]).strftime("%Y-%m-%d %H:%M") == entry["date_str"]
    )


def test_list_of_an_empty_run_says_so(tmp_path, capsys):
    assert main(["list", str(tmp_path)]) == 0
    assert "No checkpoints" in capsys.readouterr().out


def test_prune_removes_old_checkpoints_and_prints_them(tmp_path, capsys):
    for step in (1, 2, 3):
        save(tmp_path, step)
    assert main(["prune", str(tmp_path), "--keep-last", "1", "--keep-best", "0"]) == 0
    assert capsys.readouterr().out.count("removed") == 2


def test_missing_run_dir_exits_2_with_a_clear_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ckpt", "list", str(tmp_path / "absent")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "no such run directory" in result.stderr
    assert "Traceback" not in result.stderr
