"""Streaming `trainer.upscale` on real video files: audio, timestamps, odd sizes, chunks, Ctrl-C, bad input."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import av
import pytest
import torch

from tests.upscale_support import BVPP, VSRPP
from tests.upscale_support import checkpoint as _checkpoint
from tests.video_support import read_video, shot, truncate, write_video
from trainer.infer.load import load_model
from trainer.upscale import UpscaleOptions, main, upscale_frames

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")


def _film(path: Path, n: int = 24, size: tuple[int, int] = (15, 21)) -> Path:
    """Two shots with a hard cut, odd size (so yuv444p), a stereo AAC track."""
    return write_video(path, shot(n // 2, *size, seed=1) + shot(n - n // 2, *size, seed=2),
                       pix_fmt="yuv444p", audio=True)


def _audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(audio=0) if p.size]


def _frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(f.pts * f.time_base) for f in container.decode(video=0)]


def _one_error_line(err: str) -> str:
    """The `error: ...` line, checked to be the only one and the last (a progress bar may precede it)."""
    lines = err.rstrip("\n").split("\n")
    assert lines[-1].startswith("error: ") and "Traceback" not in err and err.count("error: ") == 1, err
    return lines[-1]


def test_a_video_keeps_its_audio_and_timestamps_and_odd_sizes_are_padded_to_even_for_yuv420p(tmp_path):
    ckpt = _checkpoint(tmp_path / "m.pth", "vsrpp", VSRPP)
    src = _film(tmp_path / "in.mkv")
    assert main(["--checkpoint", str(ckpt), "--input", str(src), "--output", str(tmp_path / "out.mp4"),
                 "--device", "cpu"]) == 0
    out = tmp_path / "out.mp4"
    assert _audio_packets(out) == _audio_packets(src)  # copied, not re-encoded
    assert _frame_times(out) == pytest.approx(_frame_times(src))
    frames = read_video(out)
    assert len(frames) == 24 and frames[0].shape == (46, 64, 3)  # 45x63 plus one edge row and column
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_a_variable_frame_rate_video_keeps_every_frame_time(tmp_path):
    ckpt = _checkpoint(tmp_path / "m.pth", "vsrpp", VSRPP)
    times = [0, 40, 200, 230, 500, 510, 900]
    src = write_video(tmp_path / "vfr.mkv", shot(7, 16, 16, seed=4), times_ms=times)
    for out in ("out.mp4", "out.mkv"):
        assert main(["--checkpoint", str(ckpt), "--input", str(src), "--output", str(tmp_path / out),
                     "--device", "cpu"]) == 0
        assert _frame_times(tmp_path / out) == pytest.approx([t / 1000 for t in times])


def test_codec_crf_and_pix_fmt_options_reach_the_encoder_and_yuv444p_keeps_the_exact_size(tmp_path, capsys):
    ckpt = str(_checkpoint(tmp_path / "m.pth", "vsrpp", VSRPP))
    src = str(_film(tmp_path / "in.mkv", n=6))
    out = tmp_path / "out.mkv"
    assert main(["--checkpoint", ckpt, "--input", src, "--output", str(out), "--device", "cpu",
                 "--codec", "libx264", "--crf", "0", "--pix-fmt", "yuv444p"]) == 0
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.pix_fmt == "yuv444p" and (stream.width, stream.height) == (63, 45)
    assert main(["--checkpoint", ckpt, "--input", src, "--output", str(tmp_path / "bad.mp4"), "--device", "cpu",
                 "--codec", "no-such-codec"]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith("error: --codec no-such-codec")


def test_a_basicvsrpp_checkpoint_upscales_a_video_in_chunks(tmp_path):
    ckpt = str(_checkpoint(tmp_path / "b.pth", "basicvsrpp", BVPP))
    src = _film(tmp_path / "in.mkv", n=11, size=(12, 16))
    assert main(["--checkpoint", ckpt, "--input", str(src), "--output", str(tmp_path / "out"), "--device", "cpu",
                 "--window", "5", "--window-overlap", "1"]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [f"{i:08d}.png" for i in range(11)]


def _counting(frames: torch.Tensor, pulled: list[int]):
    for i, frame in enumerate(frames):
        pulled.append(i)
        yield frame


# (start, end, keep_start, keep_end) of the chunks of window 5, overlap 1
SPANS = {4: [(0, 4, 0, 4)], 11: [(0, 4, 0, 3), (2, 7, 3, 6), (5, 10, 6, 9), (8, 11, 9, 11)]}


@pytest.mark.parametrize("t", [4, 11])
def test_a_stream_of_chunks_equals_the_model_on_each_chunk_and_reads_only_one_chunk_ahead(tmp_path, t):
    loaded = load_model(_checkpoint(tmp_path / "b.pth", "basicvsrpp", BVPP), CPU)
    frames, pulled, ahead = torch.rand(t, 3, 8, 8), [], []
    opts = UpscaleOptions(window=5, window_overlap=1)
    got = []
    for hr in upscale_frames(loaded, _counting(frames, pulled), opts, CPU):
        ahead.append(len(pulled) - len(got))
        got.append(hr)
    with torch.no_grad():
        want = [loaded.model(frames[s:e][None])[0, k - s:ke - s].clamp(0, 1) for s, e, k, ke in SPANS[t]]
    torch.testing.assert_close(torch.stack(got), torch.cat(want))
    assert max(ahead) <= opts.window + 1


def test_sliding_windows_on_a_stream_read_only_half_a_window_ahead(tmp_path):
    loaded = load_model(_checkpoint(tmp_path / "m.pth", "vsrpp", VSRPP), CPU)
    frames, pulled, ahead = torch.rand(9, 3, 6, 6), [], []
    for i, _ in enumerate(upscale_frames(loaded, _counting(frames, pulled), UpscaleOptions(), CPU)):
        ahead.append(len(pulled) - i)
    assert len(ahead) == 9 and max(ahead) <= VSRPP["num_frames"] // 2 + 1


def test_corrupt_video_and_corrupt_checkpoint_are_one_line_errors(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "m.pth", "vsrpp", VSRPP)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(4000))
    cut = truncate(_film(tmp_path / "cut.mp4", n=24, size=(16, 16)), 0.05)
    for video in (garbage, cut):
        assert main(["--checkpoint", str(ckpt), "--input", str(video), "--output", str(tmp_path / "o.mp4"),
                     "--device", "cpu"]) == 2
        assert str(video) in _one_error_line(capsys.readouterr().err)
    streamable = truncate(_film(tmp_path / "cut.mkv", n=48, size=(16, 16)), 0.5)
    assert main(["--checkpoint", str(ckpt), "--input", str(streamable), "--output", str(tmp_path / "part.mp4"),
                 "--device", "cpu"]) == 0
    assert "(truncated?)" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    bad.write_bytes(ckpt.read_bytes()[:300])
    assert main(["--checkpoint", str(bad), "--input", str(garbage), "--output", str(tmp_path / "o.mp4")]) == 2
    assert "bad.pth" in _one_error_line(capsys.readouterr().err)


def test_ctrl_c_leaves_a_playable_file_and_says_it_is_partial(tmp_path):
    ckpt = _checkpoint(tmp_path / "m.pth", "vsrpp", {**VSRPP, "n_feats": 16})
    src = write_video(tmp_path / "long.mp4", shot(200, 48, 64, seed=3), audio=True)
    out = tmp_path / "out.mp4"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "trainer.upscale", "--checkpoint", str(ckpt), "--input", str(src),
                             "--output", str(out), "--device", "cpu"], stderr=subprocess.PIPE, env=env)
    seen = b""
    while not any(int(n) >= 10 for n in re.findall(rb"(\d+)/200", seen)):  # tqdm's progress
        chunk = proc.stderr.read1(256)
        assert chunk, seen
        seen += chunk
    proc.send_signal(signal.SIGINT)
    err = seen + proc.stderr.read()
    assert proc.wait(timeout=60) == 130, err
    assert b"PARTIAL" in err
    frames = read_video(out)
    assert 10 <= len(frames) < 200 and frames[0].shape == (144, 192, 3)


def test_a_video_is_written_beside_the_output_and_a_failed_run_leaves_the_previous_output_whole(tmp_path):
    from trainer.infer.video import FrameSink

    out = tmp_path / "out.mp4"
    out.write_bytes(b"the previous, complete output")
    frame = torch.rand(3, 32, 48)
    with pytest.raises(RuntimeError), FrameSink(out, fps=25) as sink:
        sink.write("f0", frame)
        assert out.read_bytes() == b"the previous, complete output"
        raise RuntimeError("killed halfway")
    assert out.read_bytes() == b"the previous, complete output" and not sink.partial.exists()
    with FrameSink(out, fps=25) as sink:
        for i in range(3):
            sink.write(f"f{i}", frame)
    assert len(read_video(out)) == 3 and not sink.partial.exists()
