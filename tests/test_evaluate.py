"""`python -m trainer.evaluate`: inputs, LR sources, the report's forms, saved frames, clear errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.evaluate_support import checkpoint, clip_folders, write_frames
from tests.video_support import shot, write_video
from trainer.data.images import area_downscale, bicubic_downscale
from trainer.evaluate import cpu_threads, main, measure
from trainer.infer.report import METRICS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BVPP = {"num_frames": 5, "mid_channels": 16, "num_blocks": 1, "hr_channels": 4, "scale": 2}


def _run(*args: str | Path) -> int:
    return main([str(a) for a in args] + ["--device", "cpu"])


def _report(tmp_path: Path, *args: str | Path) -> dict:
    out = tmp_path / "report.json"
    assert _run(*args, "--json", out) == 0
    return json.loads(out.read_text())


def test_json_has_the_contract_structure_and_the_mean_is_over_clips(tmp_path):
    ckpt = checkpoint(tmp_path / "m.pth")
    root = clip_folders(tmp_path / "gt", clips=("a", "b"), frames=3)
    write_frames(root / "c", shot(5, 36, 48, seed=9))  # more frames must not weigh more
    report = _report(tmp_path, "--checkpoint", ckpt, "--data", root)
    assert set(report) == {"scale", "crop_border", "clips", "mean"}
    assert (report["scale"], report["crop_border"]) == (3, 3)
    assert [(c["name"], c["frames"]) for c in report["clips"]] == [("a", 3), ("b", 3), ("c", 5)]
    for row in report["clips"]:
        assert set(row) == {"name", "frames", *METRICS, "bicubic", "bilinear"}
        assert set(row["bicubic"]) == set(row["bilinear"]) == set(METRICS)
        assert 10 < row["psnr_y"] < 60 and 0 < row["ssim_rgb"] <= 1
    assert report["mean"]["frames"] == 11
    for key in METRICS:
        assert report["mean"][key] == pytest.approx(np.mean([c[key] for c in report["clips"]]))
        assert report["mean"]["bicubic"][key] == pytest.approx(np.mean([c["bicubic"][key] for c in report["clips"]]))


def test_csv_has_one_row_per_clip_and_the_mean_and_the_table_is_printed(tmp_path, capsys):
    ckpt = checkpoint(tmp_path / "m.pth")
    root = clip_folders(tmp_path / "gt")
    report = _report(tmp_path, "--checkpoint", ckpt, "--data", root, "--csv", tmp_path / "r.csv")
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [r["name"] for r in rows] == ["a", "b", "mean"]
    assert float(rows[2]["bilinear_psnr_y"]) == pytest.approx(report["mean"]["bilinear"]["psnr_y"])
    assert float(rows[0]["ssim_rgb"]) == pytest.approx(report["clips"][0]["ssim_rgb"])
    table = capsys.readouterr().out
    assert "bicubic" in table and "bilinear" in table and f"{report['mean']['psnr_y']:6.2f}" in table


def test_saved_frames_measured_again_give_the_same_numbers(tmp_path):
    ckpt = checkpoint(tmp_path / "m.pth")
    root = clip_folders(tmp_path / "gt", size=(37, 50))  # GT cropped to 36x48 at x3
    out = tmp_path / "sr"
    report = _report(tmp_path, "--checkpoint", ckpt, "--data", root, "--save", out)
    for row in report["clips"]:
        saved = sorted((out / row["name"]).iterdir())
        assert [p.name for p in saved] == ["00000000.png", "00000001.png", "00000002.png"]
        to01 = lambda paths: torch.from_numpy(np.stack(  # noqa: E731
            [np.asarray(Image.open(p).convert("RGB"))[:36, :48] for p in paths])).permute(0, 3, 1, 2).double() / 255
        scores = measure(to01(saved), to01([root / row["name"] / p.name for p in saved]), report["crop_border"])
        for key in METRICS:
            assert row[key] == pytest.approx(float(scores[key].mean()), abs=1e-9)


def test_without_lr_the_checkpoints_training_degradation_makes_it(tmp_path):
    root = clip_folders(tmp_path / "gt", clips=("a",))
    gt = np.stack([np.asarray(Image.open(p)) for p in sorted((root / "a").iterdir())])
    for how, downscale in (("area", area_downscale), ("bicubic", bicubic_downscale)):
        ckpt = checkpoint(tmp_path / f"{how}.pth", degrade=how)
        write_frames(tmp_path / f"lr_{how}" / "a", list(downscale(gt, 3)))
        made = _report(tmp_path, "--checkpoint", ckpt, "--data", root)
        given = _report(tmp_path, "--checkpoint", ckpt, "--data", root, "--lr", tmp_path / f"lr_{how}")
        assert made == given
    assert made != _report(tmp_path, "--checkpoint", tmp_path / "area.pth", "--data", root)


def test_a_video_file_and_a_single_frame_folder_are_one_clip_each(tmp_path):
    ckpt = checkpoint(tmp_path / "m.pth")
    video = write_video(tmp_path / "street.mp4", shot(4, 48, 64, seed=3))
    report = _report(tmp_path, "--checkpoint", ckpt, "--data", video, "--crop-border", "0")
    assert [(c["name"], c["frames"]) for c in report["clips"]] == [("street", 4)]
    assert report["crop_border"] == 0
    folder = clip_folders(tmp_path / "gt", clips=("walk",))
    assert [c["name"] for c in _report(tmp_path, "--checkpoint", ckpt, "--data", folder / "walk")["clips"]] == ["walk"]


def test_a_many_to_many_model_is_evaluated_over_the_whole_clip(tmp_path):
    ckpt = checkpoint(tmp_path / "b.pth", "basicvsrpp", BVPP)
    report = _report(tmp_path, "--checkpoint", ckpt, "--data", clip_folders(tmp_path / "gt", clips=("a",), frames=4,
                                                                            size=(32, 32)))
    assert report["scale"] == 2 and report["clips"][0]["frames"] == 4


@pytest.mark.parametrize("case", ["count", "size", "empty", "missing_clip", "corrupt_checkpoint", "no_data",
                                  "corrupt_video"])
def test_bad_input_is_one_clear_line(tmp_path, capsys, case):
    ckpt = checkpoint(tmp_path / "m.pth")
    root = clip_folders(tmp_path / "gt", clips=("a", "b"))
    lr = tmp_path / "lr"
    args: list = ["--checkpoint", ckpt, "--data", root]
    if case in ("count", "size", "missing_clip"):
        n, size = (2, (12, 16)) if case == "count" else (3, (10, 16) if case == "size" else (12, 16))
        for name in ("a",) if case == "missing_clip" else ("a", "b"):
            write_frames(lr / name, [np.zeros((*size, 3), np.uint8)] * n)
        args += ["--lr", lr]
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        args[3] = tmp_path / "empty"
    elif case == "corrupt_checkpoint":
        (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
        args[1] = tmp_path / "bad.pth"
    elif case == "no_data":
        args[3] = tmp_path / "nowhere"
    elif case == "corrupt_video":
        (tmp_path / "broken.mp4").write_bytes(b"\x00" * 4096)
        args[3] = tmp_path / "broken.mp4"
    assert _run(*args) == 2
    stderr = capsys.readouterr().err
    err = stderr.strip().splitlines()[-1]
    assert "Traceback" not in stderr
    expected = {"count": "3 GT frames but 2 LR frames", "size": "LR frames are 16x10", "empty": "no frames",
                "missing_clip": "no clip named b", "corrupt_checkpoint": "bad.pth", "no_data": "no such file",
                "corrupt_video": "cannot read it as a video"}[case]
    assert err.startswith("error: ") and expected in err


def test_the_command_line_runs_as_a_module(tmp_path):
    ckpt = checkpoint(tmp_path / "m.pth")
    root = clip_folders(tmp_path / "gt", clips=("a",), frames=3)
    done = subprocess.run([sys.executable, "-m", "trainer.evaluate", "--checkpoint", str(ckpt), "--data", str(root),
                           "--device", "cpu", "--lr", str(tmp_path / "none")], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "error:" in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_without_cuda_is_one_clear_line(tmp_path, capsys):
    ckpt = checkpoint(tmp_path / "m.pth")
    assert main(["--checkpoint", str(ckpt), "--data", str(clip_folders(tmp_path / "gt")), "--device", "cuda"]) == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr and "CUDA is not available" in stderr.strip().splitlines()[-1]


def test_threads_sets_the_cpu_threads_and_a_negative_count_is_one_clear_line(tmp_path, capsys):
    ckpt = checkpoint(tmp_path / "m.pth")
    root = clip_folders(tmp_path / "gt", clips=("a",))
    before = torch.get_num_threads()
    try:
        assert _run("--checkpoint", ckpt, "--data", root, "--threads", "2") == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert _run("--checkpoint", ckpt, "--data", root, "--threads", "-1") == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: --threads must be >= 0, got -1"


def test_cpu_threads_are_as_asked_else_every_core_or_one_when_the_cores_are_busy(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu_threads(3, cores=8, load=20.0) == 3
    assert cpu_threads(0, cores=8, load=1.5) == 8
    assert cpu_threads(0, cores=2, load=7.7) == 1  # a busy 2-core box: one thread, not two waiting on each other
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert cpu_threads(0, cores=2, load=7.7) == 2
