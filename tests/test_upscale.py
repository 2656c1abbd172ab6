"""`python -m trainer.upscale`: frame folders in and out, windows, tiles, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ckpt import load_checkpoint, save_checkpoint
from tests.ckpt_support import save_as_if_on_cuda
from tests.upscale_support import BVPP, VSRPP
from tests.upscale_support import checkpoint as _checkpoint
from trainer.infer.sequence import overlapping_chunks
from trainer.models import build
from trainer.upscale import (
    UpscaleOptions,
    load_model,
    main,
    read_frames,
    run_tiled,
    upscale_frames,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

def _frames(folder: Path, n: int = 4, size: tuple[int, int] = (10, 12)) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        ext = "jpg" if i == 1 else "png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"f{i:03d}.{ext}")
    return folder


def test_a_frame_folder_is_upscaled_into_pngs_with_the_same_names(tmp_path):
    ckpt = _checkpoint(tmp_path / "m.pth", "vsrpp", VSRPP)
    src = _frames(tmp_path / "in")
    assert main(["--checkpoint", str(ckpt), "--input", str(src), "--output", str(tmp_path / "out"),
                 "--device", "cpu", "--expect-scale", "3", "--expect-model", "vsrpp"]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["f000.png", "f001.png", "f002.png", "f003.png"]
    assert Image.open(tmp_path / "out" / "f001.png").size == (36, 30)


def test_a_checkpoint_trained_on_a_gpu_box_upscales_on_a_cpu_box(tmp_path, monkeypatch):
    made = _checkpoint(tmp_path / "m.pth", "vsrpp", VSRPP)
    on_gpu = save_as_if_on_cuda(tmp_path / "gpu.pth", load_checkpoint(made), monkeypatch)  # CUDA-tagged storages
    src = _frames(tmp_path / "in", n=3)
    for model, out in ((made, "cpu-made"), (on_gpu, "gpu-made")):
        assert main(["--checkpoint", str(model), "--input", str(src), "--output", str(tmp_path / out),
                     "--device", "cpu"]) == 0
    for made_here in sorted((tmp_path / "cpu-made").iterdir()):
        assert made_here.read_bytes() == (tmp_path / "gpu-made" / made_here.name).read_bytes()


def test_sliding_windows_repeat_edge_frames_and_tiles_match_the_whole_frame_pass(tmp_path):
    loaded = load_model(_checkpoint(tmp_path / "m.pth", "vsrpp", VSRPP), torch.device("cpu"))
    frames = torch.rand(4, 3, 20, 22)
    whole = torch.stack(list(upscale_frames(loaded, frames, UpscaleOptions(), torch.device("cpu"))))
    with torch.no_grad():
        first = loaded.model(frames[[0, 0, 1]].unsqueeze(0))[0].clamp(0, 1)
        last = loaded.model(frames[[2, 3, 3]].unsqueeze(0))[0].clamp(0, 1)
    torch.testing.assert_close(whole[0], first)
    torch.testing.assert_close(whole[3], last)
    tiled = torch.stack(list(upscale_frames(loaded, frames, UpscaleOptions(tile=8, tile_overlap=10),
                                            torch.device("cpu"))))
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_tiles_without_context_differ_but_cover_every_pixel():
    x = torch.rand(1, 2, 3, 9, 7)
    out = run_tiled(lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2), x, 2, 4, 0)
    torch.testing.assert_close(out, x.repeat_interleave(2, -1).repeat_interleave(2, -2))


@pytest.mark.parametrize("t, window, overlap", [(1, 5, 1), (7, 7, 2), (20, 7, 2), (9, 4, 1), (10, 3, 0)])
def test_chunks_keep_every_frame_exactly_once_with_context_and_stay_within_the_window(t, window, overlap):
    frames = (torch.full((3, 1, 1), float(i)) for i in range(t))  # each frame holds its index
    kept = []
    for chunk, keep, keep_end in overlapping_chunks(frames, window, overlap):
        index = chunk[0, :, 0, 0, 0].long().tolist()  # the frames of this chunk
        assert index == list(range(index[0], index[-1] + 1)) and len(index) <= window
        assert 0 <= keep < keep_end <= len(index)
        if t > window:  # context on both sides, as far as the sequence goes
            assert keep == min(overlap, index[keep])
            assert len(index) - keep_end == min(overlap, t - 1 - index[keep_end - 1])
        kept += index[keep:keep_end]
    assert kept == list(range(t))


def test_basicvsrpp_chunks_give_every_frame_and_a_whole_chunk_equals_the_model(tmp_path):
    loaded = load_model(_checkpoint(tmp_path / "b.pth", "basicvsrpp", BVPP), torch.device("cpu"))
    assert loaded.many_to_many and loaded.scale == 2
    frames = torch.rand(6, 3, 8, 8)
    chunked = list(upscale_frames(loaded, frames, UpscaleOptions(window=4, window_overlap=1), torch.device("cpu")))
    assert len(chunked) == 6 and all(f.shape == (3, 16, 16) for f in chunked)
    whole = list(upscale_frames(loaded, frames, UpscaleOptions(window=6, window_overlap=1), torch.device("cpu")))
    with torch.no_grad():
        torch.testing.assert_close(torch.stack(whole), loaded.model(frames[None])[0].clamp(0, 1))


def test_wrong_architecture_or_scale_and_missing_model_info_are_clear_errors(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "m.pth", "vsrpp", VSRPP)
    src = _frames(tmp_path / "in", n=1)
    base = ["--checkpoint", str(ckpt), "--input", str(src), "--output", str(tmp_path / "o"), "--device", "cpu"]
    assert main([*base, "--expect-scale", "4"]) == 2
    assert "x3 model, not the expected x4" in capsys.readouterr().err
    assert main([*base, "--expect-model", "basicvsrpp"]) == 2
    assert "'vsrpp' model, not the expected 'basicvsrpp'" in capsys.readouterr().err
    bare = save_checkpoint(tmp_path / "bare.pth", {"step": 3, "model_state_dict": {}})
    assert main(["--checkpoint", str(bare), *base[2:]]) == 2
    assert "no model_name/model_kwargs" in capsys.readouterr().err
    assert main([*base[:4], "--output", str(src), "--device", "cpu"]) == 2
    assert "must differ from --input" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    ckpt = str(_checkpoint(tmp_path / "m.pth", "vsrpp", VSRPP))
    (tmp_path / "empty").mkdir()
    assert main(["--checkpoint", ckpt, "--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o")]) == 2
    assert "no PNG/JPG frames" in capsys.readouterr().err
    assert main(["--checkpoint", str(tmp_path / "none.pth"), "--input", "x", "--output", "y"]) == 2
    assert "none.pth" in capsys.readouterr().err
    assert main(["--checkpoint", ckpt, "--input", ckpt, "--output", "y", "--window", "2",
                 "--window-overlap", "1"]) == 2
    assert "--window (2) must exceed" in capsys.readouterr().err


def test_video_files_need_pyav_or_round_trip_with_it(tmp_path, capsys):
    ckpt = str(_checkpoint(tmp_path / "m.pth", "vsrpp", VSRPP))
    src = _frames(tmp_path / "in", size=(16, 16))
    code = main(["--checkpoint", ckpt, "--input", str(src), "--output", str(tmp_path / "o.mp4"), "--device", "cpu"])
    try:
        import av  # noqa: F401
    except ImportError:
        assert code == 2 and "need PyAV" in capsys.readouterr().err
        return
    assert code == 0
    names, frames, _ = read_frames(tmp_path / "o.mp4")
    assert len(names) == 4 and frames.shape == (4, 3, 48, 48)


def test_a_checkpoint_whose_kwargs_leave_scale_to_the_defaults_loads_at_the_models_own_scale(tmp_path):
    path = _checkpoint(tmp_path / "defaults.pth", "vsrpp", {})  # model_kwargs {}: every default
    built = build("vsrpp")
    loaded = load_model(path, torch.device("cpu"))
    assert (loaded.scale, loaded.num_frames) == (built.scale, built.num_frames) and loaded.scale > 0
