"""`python -m trainer.export`: ONNX that onnxruntime runs like eager PyTorch, and upscale running it."""

from __future__ import annotations

import sys

import av
import onnx
import pytest
import torch
from torch import nn

from tests.upscale_support import BVPP, VSRPP, checkpoint
from tests.video_support import read_video, shot, write_video
from trainer import models
from trainer.export import main as export_main
from trainer.infer.load import load_model
from trainer.infer.model import UpscaleError
from trainer.upscale import main as upscale_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")
BVPP_FRAMES = 3  # basicvsrpp unrolls its recurrence over T frames: a small T keeps the export quick


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{name: (checkpoint, model.onnx)} for small models of both architectures, exported once."""
    root = tmp_path_factory.mktemp("export")
    out = {}
    for name, kwargs, extra in (("vsrpp", VSRPP, []), ("basicvsrpp", BVPP, ["--frames", str(BVPP_FRAMES)])):
        ckpt = checkpoint(root / f"{name}.pth", name, kwargs)
        assert export_main(["--checkpoint", str(ckpt), "--out", str(root / f"{name}.onnx"), *extra]) == 0
        out[name] = (ckpt, root / f"{name}.onnx")
    return out


@pytest.mark.parametrize("name", ["vsrpp", "basicvsrpp"])
def test_onnxruntime_equals_eager_pytorch_within_1e_4_at_two_frame_sizes_and_batch_sizes(exported, name):
    ckpt, onnx_path = exported[name]
    eager, runtime = load_model(ckpt, CPU), load_model(onnx_path, CPU)
    t = eager.num_frames if not eager.many_to_many else BVPP_FRAMES
    for batch, (h, w) in ((1, (20, 24)), (2, (33, 45))):
        x = torch.rand(batch, t, 3, h, w, generator=torch.Generator().manual_seed(h))
        with torch.no_grad():
            want = eager.model(x)
        got = runtime.model(x)
        assert got.shape == want.shape
        assert (got - want).abs().max().item() < 1e-4


def test_the_model_facts_travel_in_the_onnx_metadata(exported):
    meta = {p.key: p.value for p in onnx.load(str(exported["basicvsrpp"][1])).metadata_props}
    assert meta["model_name"] == "basicvsrpp" and meta["scale"] == "2" and meta["many_to_many"] == "true"
    assert meta["frames"] == str(BVPP_FRAMES) and meta["num_frames"] == "5"
    loaded = load_model(exported["vsrpp"][1], CPU, expect_model="vsrpp", expect_scale=3)
    assert (loaded.name, loaded.scale, loaded.num_frames, loaded.many_to_many) == ("vsrpp", 3, 3, False)


def test_checkpoint_to_onnx_to_upscaled_video_keeps_the_audio_and_matches_pytorch(exported, tmp_path):
    ckpt, onnx_path = exported["vsrpp"]
    src = write_video(tmp_path / "in.mp4", shot(6, 16, 16, seed=1) + shot(5, 16, 16, seed=2), audio=True)
    for model, out in ((onnx_path, "onnx.mp4"), (ckpt, "torch.mp4")):
        assert upscale_main(["--checkpoint", str(model), "--input", str(src), "--output", str(tmp_path / out),
                             "--device", "cpu", "--crf", "0"]) == 0
    audio = []
    for path in (src, tmp_path / "onnx.mp4"):
        with av.open(str(path)) as container:
            audio.append([bytes(p) for p in container.demux(audio=0) if p.size])
    assert audio[0] and audio[1] == audio[0]  # the audio packets, copied unchanged
    a, b = read_video(tmp_path / "onnx.mp4"), read_video(tmp_path / "torch.mp4")
    assert len(a) == 11 and a[0].shape == (48, 48, 3)
    assert max(abs(x.astype(int) - y.astype(int)).max() for x, y in zip(a, b, strict=True)) <= 2


def test_an_exported_basicvsrpp_runs_videos_longer_and_shorter_than_its_frames(exported, tmp_path):
    _, onnx_path = exported["basicvsrpp"]
    for n in (2, 7):
        src = write_video(tmp_path / f"in{n}.mp4", shot(n, 16, 16, seed=n))
        assert upscale_main(["--checkpoint", str(onnx_path), "--input", str(src), "--output",
                             str(tmp_path / f"out{n}"), "--device", "cpu"]) == 0
        assert len(list((tmp_path / f"out{n}").iterdir())) == n


def test_an_operator_without_onnx_form_is_named_in_one_line(tmp_path, monkeypatch, capsys):
    class Bessel(nn.Module):
        def __init__(self, num_frames: int = 3, scale: int = 2) -> None:
            super().__init__()
            self.conv, self.scale = nn.Conv2d(3, 3, 1), scale

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.special.bessel_j0(self.conv(x[:, x.shape[1] // 2]))
            return nn.functional.interpolate(y, scale_factor=self.scale)

    monkeypatch.setitem(models._FACTORIES, "bessel", Bessel)
    monkeypatch.setitem(models.MODEL_INFO, "bessel", {"many_to_many": False})
    ckpt = checkpoint(tmp_path / "b.pth", "bessel", {"num_frames": 3, "scale": 2})
    assert export_main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "b.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bessel cannot be exported") and "aten::special_bessel_j0" in err
    assert err.count("\n") == 1 and not (tmp_path / "b.onnx").exists()


def test_without_onnxruntime_an_onnx_checkpoint_is_a_one_line_error(exported, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(UpscaleError, match="needs onnxruntime"):
        load_model(exported["vsrpp"][1], CPU)
    assert upscale_main(["--checkpoint", str(exported["vsrpp"][1]), "--input", "x", "--output", "y"]) == 2
    assert capsys.readouterr().err == "error: running a .onnx model needs onnxruntime: pip install -e '.[onnx]'\n"


@pytest.mark.parametrize("name", ["vsrpp", "basicvsrpp"])
def test_fp16_export_runs_close_to_float32(exported, tmp_path, name):
    ckpt, _ = exported[name]
    assert export_main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "h.onnx"), "--fp16", "--frames", "3"]) == 0
    x = torch.rand(1, 3, 3, 12, 16)
    with torch.no_grad():
        want = load_model(ckpt, CPU).model(x)
    assert (load_model(tmp_path / "h.onnx", CPU).model(x) - want).abs().max().item() < 1e-2


def test_bad_export_requests_and_bad_onnx_files_are_clear(exported, tmp_path, capsys):
    ckpt, _ = exported["vsrpp"]
    assert export_main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "x.onnx"), "--frames", "5"]) == 2
    assert "takes exactly num_frames=3" in capsys.readouterr().err
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(UpscaleError, match="onnxruntime cannot load"):
        load_model(garbage, CPU)
