"""Released BasicVSR++ files (BasicSR, mmagic, bare state dicts) run as they are: `--checkpoint FILE`
in upscale, evaluate and export, checked against BasicSR 1.4.2's own code (its PyPI sdist)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.bench_evaluate import basicsr_y, load_basicsr_metrics
from tests import released_support as rs
from tests.evaluate_support import write_frames
from tests.trainer_support import ONE_THREAD
from tests.video_support import shot
from trainer.infer.load import load_model
from trainer.infer.model import UpscaleError
from trainer.infer.released import read_model_file
from trainer.models import build

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def basicsr_cls():
    cls = rs.basicsr_class()
    if cls is None:
        pytest.skip("basicsr==1.4.2 sdist unavailable: not cached in ~/.cache/vsrpp and `pip download` failed")
    return cls


@pytest.fixture(scope="module")
def released(basicsr_cls, tmp_path_factory):
    """A small BasicSR model, its output on 4 real 64x64 frames (BasicSR's own forward, 8-bit), and the
    same weights saved as BasicSR, mmagic and bare files."""
    root = tmp_path_factory.mktemp("released")
    model = rs.basicsr_model(basicsr_cls)
    frames = shot(4, 64, 64, seed=3)
    lr = write_frames(root / "lr", frames)
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div(255).unsqueeze(0)
    with torch.no_grad():
        out = model(x)[0]  # BasicSR's forward(): [T, 3, 256, 256]
    state = model.state_dict()
    files = {"basicsr": rs.save_basicsr(root / "BasicVSRPP_x4_tiny.pth", state),
             "mmagic": rs.save_mmagic(root / "basicvsr-pp_tiny.pth", state),
             "bare": rs.save_bare(root / "bare.pth", state)}
    return {"root": root, "lr": lr, "ref": rs.to_8bit(out), "files": files, "state": state}


def _upscale(checkpoint: Path, lr: Path, out: Path) -> tuple[np.ndarray, str]:
    proc = subprocess.run([sys.executable, "-m", "trainer.upscale", "--checkpoint", str(checkpoint), "--input",
                           str(lr), "--output", str(out), "--device", "cpu"], capture_output=True, text=True,
                          timeout=300, env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    return np.stack([np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))]), proc.stderr


def test_upscale_of_a_basicsr_file_equals_basicsr_forward_in_8bit(released):
    frames, stderr = _upscale(released["files"]["basicsr"], released["lr"], released["root"] / "sr_basicsr")
    assert frames.shape == released["ref"].shape == (4, 256, 256, 3)
    assert np.abs(frames.astype(int) - released["ref"]).max() <= 1  # float order at a rounding edge
    assert (frames == released["ref"]).mean() > 0.999
    assert "a BasicSR file, weights from 'params'" in stderr and "mid_channels=16 num_blocks=1 scale=4" in stderr


def test_mmagic_and_bare_copies_give_the_basicsr_copys_frames(released):
    from trainer.upscale import main

    lr, root, frames = released["lr"], released["root"], {}
    for fmt in ("basicsr", "mmagic", "bare"):
        out = root / f"sr_inproc_{fmt}"
        assert main(["--checkpoint", str(released["files"][fmt]), "--input", str(lr), "--output", str(out),
                     "--device", "cpu"]) == 0
        frames[fmt] = np.stack([np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))])
    assert np.array_equal(frames["mmagic"], frames["basicsr"])
    assert np.array_equal(frames["bare"], frames["basicsr"])


def test_evaluate_y_psnr_equals_basicsr_calculate_psnr_on_basicsr_output(released):
    from trainer.evaluate import main

    metrics = load_basicsr_metrics()
    if metrics is None:
        pytest.skip("BasicSR's metric code (sdist) or cv2 unavailable")
    root, ref = released["root"], released["ref"]
    gt_frames = [np.asarray(Image.fromarray(f).resize((256, 256), Image.BICUBIC)) for f in shot(4, 64, 64, seed=3)]
    write_frames(root / "gt" / "clip", gt_frames)
    write_frames(root / "lrclips" / "clip", shot(4, 64, 64, seed=3))
    report_path = root / "report.json"
    assert main(["--checkpoint", str(released["files"]["basicsr"]), "--data", str(root / "gt"),
                 "--lr", str(root / "lrclips"), "--device", "cpu", "--json", str(report_path)]) == 0
    row = json.loads(report_path.read_text())["clips"][0]
    want = np.mean([basicsr_y(metrics, ref[i], gt_frames[i], 4)[0] for i in range(4)])
    assert row["psnr_y"] == pytest.approx(want, abs=0.01)


def test_params_ema_is_used_when_both_are_present_and_said(released, tmp_path, capsys):
    state = released["state"]
    ema = {k: v + 0.01 if v.is_floating_point() and "spynet" not in k else v for k, v in state.items()}
    path = rs.save_basicsr(tmp_path / "both.pth", state, ema=ema)
    loaded = load_model(path, CPU)
    assert loaded.source.format == "basicsr" and loaded.source.params_key == "params_ema"
    assert torch.equal(loaded.model.conv_last.weight, ema["conv_last.weight"])
    assert "weights from 'params_ema' ('params' also in the file, not used)" in capsys.readouterr().err


@pytest.mark.parametrize(("mid", "blocks"), [(64, 7), (32, 2), (128, 25)])  # paper, small, NTIRE's c128n25
def test_architecture_comes_from_the_tensors(tmp_path, mid, blocks):
    state = build("basicvsrpp", mid_channels=mid, num_blocks=blocks).state_dict()
    found = read_model_file(rs.save_mmagic(tmp_path / "m.pth", state))
    assert (found.name, found.kwargs) == ("basicvsrpp", {"mid_channels": mid, "num_blocks": blocks, "scale": 4})
    assert found.source.format == "mmagic"


def test_a_projects_x2_model_saved_bare_loads_with_its_hr_channels(tmp_path):
    model = build("basicvsrpp", mid_channels=16, num_blocks=1, hr_channels=8, scale=2)
    loaded = load_model(rs.save_bare(tmp_path / "x2.pth", model.state_dict()), CPU)
    assert (loaded.scale, loaded.kwargs["hr_channels"], loaded.source.format) == (2, 8, "state_dict")


def _cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120,
                          env=ONE_THREAD)


def _deblur_state() -> dict:
    """An is_low_res_input=False BasicVSR++ (mmagic's deblur/denoise/NTIRE decompression models)."""
    state = build("basicvsrpp", mid_channels=16, num_blocks=1).state_dict()
    feat = {k: v for k, v in state.items() if k.startswith("feat_extract.")}
    state = {k: v for k, v in state.items() if k not in feat}
    state.update({"feat_extract.0.weight": torch.zeros(16, 3, 3, 3), "feat_extract.2.weight": torch.zeros(16, 16, 3, 3),
                  **{k.replace("feat_extract.", "feat_extract.4."): v for k, v in feat.items()}})
    return state


REFUSED = [
    (lambda p: rs.save_basicsr(p, {**build("basicvsrpp", mid_channels=16, num_blocks=1).state_dict(),
                                   "extra_head.weight": torch.zeros(3)}), "unknown layer 'extra_head.weight'"),
    (lambda p: rs.save_basicsr(p, {"forward_trunk.main.0.weight": torch.zeros(3)}), "BasicVSR/IconVSR"),
    (lambda p: torch.save({"meta": {"epoch": 1}}, p), "holds no model weights"),
]


@pytest.mark.parametrize(("make", "says"), REFUSED)
def test_a_file_that_fits_no_model_is_refused_in_one_line_naming_it(tmp_path, make, says):
    path = tmp_path / "released.pth"
    make(path)
    with pytest.raises(UpscaleError) as refused:
        load_model(path, CPU)
    assert "\n" not in str(refused.value) and str(path) in str(refused.value) and says in str(refused.value)


def test_a_deblur_model_is_refused_by_upscale_evaluate_and_export_in_one_line_exit_2(tmp_path):
    path = rs.save_mmagic(tmp_path / "basicvsr-pp_deblur.pth", _deblur_state())
    for module, extra in (("trainer.upscale", ["--input", str(tmp_path), "--output", str(tmp_path / "o")]),
                          ("trainer.evaluate", ["--data", str(tmp_path)]),
                          ("trainer.export", ["--out", str(tmp_path / "m.onnx")])):
        proc = _cli(module, "--checkpoint", str(path), *extra)
        assert proc.returncode == 2, (module, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and "is_low_res_input=False" in lines[0], (module, lines)


def test_a_file_with_objects_the_safe_loader_refuses_names_the_type_and_the_opt_in_loads_it(tmp_path):
    state = build("basicvsrpp", mid_channels=16, num_blocks=1).state_dict()
    path = tmp_path / "numpy_meta.pth"
    torch.save({**rs.mmagic_names(state), "meta": {"best_score": np.float64(30.1)}}, path)
    with pytest.raises(UpscaleError, match="numpy") as refused:
        load_model(path, CPU)
    assert "\n" not in str(refused.value)
    with pytest.warns(UserWarning, match="allow_unsafe"):
        assert load_model(path, CPU, allow_unsafe=True).source.format == "mmagic"
