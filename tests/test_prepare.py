"""`python -m trainer.prepare`: videos made with PyAV (cuts, black, frozen, blurred, audio, odd
sizes, 10-bit, truncated, not a video) to clip folders, checked frame by frame against the source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.video_support import black, blurred, frozen, read_video, shot, truncate, write_video
from trainer.prepare.__main__ import main

H, W, T = 48, 64, 8


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cuts.mp4: 3 shots of 20 frames, audio; dark.mkv: shot 16 + black 8 + frozen 16 + shot 16;
    soft.mp4: 16 sharp + 16 blurred; odd.mkv: 66x46 lossless; plain.mp4: one 32-frame shot;
    broken.mp4: truncated; notes.mp4: text."""
    root = tmp_path_factory.mktemp("footage")
    write_video(root / "cuts.mp4", shot(20, H, W, 1) + shot(20, H, W, 2) + shot(20, H, W, 3), audio=True)
    lead = shot(16, H, W, 4)
    write_video(root / "dark.mkv", lead + black(8, H, W) + frozen(16, lead[-1]) + shot(16, H, W, 5))
    write_video(root / "soft.mp4", shot(16, H, W, 6) + blurred(shot(16, H, W, 7), 6))
    write_video(root / "odd.mkv", shot(24, 46, 66, 8), codec="ffv1", pix_fmt="yuv444p")
    write_video(root / "plain.mp4", shot(32, H, W, 9))
    truncate(write_video(root / "broken.mp4", shot(24, H, W, 10)))
    (root / "notes.mp4").write_text("not a video\n")
    return root


def run(*args: str | Path) -> int:
    return main([str(a) for a in args])


def clip_arrays(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def source_index(video: Path) -> dict[bytes, int]:
    """Decoded frame bytes -> frame number in the source (PNG is lossless, so clips match exactly)."""
    index: dict[bytes, int] = {}
    for i, frame in enumerate(read_video(video)):
        index.setdefault(frame.tobytes(), i)
    return index


def manifest(out: Path) -> dict:
    return json.loads((out / "prepare.json").read_text())


def test_clips_are_consecutive_frames_of_one_shot_never_spanning_a_cut(footage: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(footage / "cuts.mp4", footage / "plain.mp4", "--out", out, "--frames", T, "--workers", 1) == 0
    clips = sorted((out / "train").glob("cuts_*")) + sorted((out / "val").glob("cuts_*"))
    assert [c.name for c in sorted(clips)] == [f"cuts_{i:04d}" for i in range(6)]  # 2 per 20-frame shot
    index = source_index(footage / "cuts.mp4")
    for clip in clips:
        frames = [index[f.tobytes()] for f in clip_arrays(clip)]
        assert len(frames) == T and frames == list(range(frames[0], frames[0] + T))
        assert frames[0] // 20 == frames[-1] // 20  # shots are frames 0-19, 20-39, 40-59
    assert manifest(out)["videos"]["cuts"]["skipped"]["shot_end"] == 3 * (20 - 2 * T)


def test_black_frozen_and_blurred_windows_are_skipped_and_counted(footage: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--out", out, "--frames", T, "--workers", 1, "--val-fraction", 0.5, "--blur-threshold", 0.3]
    assert run(footage / "dark.mkv", footage / "soft.mp4", *args) == 0
    videos = manifest(out)["videos"]
    assert videos["dark"]["skipped"] == {"black": T, "frozen": 16, "blurred": 0, "shot_end": 0, "unselected": 0}
    assert videos["dark"]["clips"] == 4 and videos["soft"]["clips"] == 2
    assert videos["soft"]["skipped"]["blurred"] == 16
    for clip in out.glob("*/*"):
        frames = clip_arrays(clip)
        assert frames.mean(axis=(1, 2, 3)).min() > 16  # no black frame
        assert np.abs(np.diff(frames.astype(int), axis=0)).mean() > 1  # moving


def test_thresholds_are_options(footage: Path, tmp_path: Path, capsys) -> None:
    assert run(footage / "dark.mkv", "--out", tmp_path / "a", "--frames", T, "--val-fraction", 0,
               "--frozen-threshold", 0, "--black-threshold", 0, "--blur-threshold", 1) == 0
    assert manifest(tmp_path / "a")["videos"]["dark"]["clips"] == 7  # black, flat and frozen windows kept
    assert run(footage / "plain.mp4", "--out", tmp_path / "b", "--val-fraction", 0, "--cut-threshold", 0) == 1
    assert "no usable clips" in capsys.readouterr().err  # every frame is a cut


def test_split_is_by_video_and_chosen_by_the_seed(footage: Path, tmp_path: Path) -> None:
    videos = [footage / n for n in ("cuts.mp4", "dark.mkv", "odd.mkv", "plain.mp4")]
    splits = []
    for seed in range(4):
        out = tmp_path / f"s{seed}"
        assert run(*videos, "--out", out, "--frames", T, "--val-fraction", 0.5, "--seed", seed) == 0
        train = {c.name.rsplit("_", 1)[0] for c in (out / "train").iterdir()}
        val = {c.name.rsplit("_", 1)[0] for c in (out / "val").iterdir()}
        assert len(val) == 2 and len(train) == 2 and not train & val
        splits.append(frozenset(val))
    assert len(set(splits)) > 1


def test_bad_inputs_are_skipped_and_named_and_the_rest_is_prepared(footage: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert run(footage, "--out", out, "--frames", T) == 0  # the whole folder, recursively
    text = capsys.readouterr().out
    for name in ("broken.mp4", "notes.mp4"):
        assert f"skipped {footage / name}: cannot open" in text
    assert set(manifest(out)["videos"]) == {"cuts", "dark", "soft", "odd", "plain"}
    assert "frames left out: black 8, frozen 16" in text


def test_nothing_usable_is_a_one_line_error_and_a_failed_exit(footage: Path, tmp_path: Path, capsys) -> None:
    assert run(footage / "broken.mp4", footage / "notes.mp4", "--out", tmp_path / "out") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("prepare: no usable video among 2 input file(s)") and "\n" not in err
    assert run(footage / "plain.mp4", "--out", tmp_path / "one") == 1
    assert "at least 2 videos (or --val-fraction 0" in capsys.readouterr().err
    assert run(tmp_path / "missing.mp4", "--out", tmp_path / "x") == 1


def test_an_out_made_with_other_options_is_refused_naming_the_option(footage: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert run(footage / "plain.mp4", "--out", out, "--frames", T, "--val-fraction", 0) == 0
    before = sorted(p.name for p in (out / "train").iterdir())
    assert run(footage / "plain.mp4", "--out", out, "--frames", 6, "--val-fraction", 0) == 1
    assert "--frames 8 (this run: 6)" in capsys.readouterr().err
    assert run(footage / "plain.mp4", "--out", out, "--frames", T, "--val-fraction", 0, "--format", "raw") == 1
    assert "different --format 'png' (this run: 'raw')" in capsys.readouterr().err
    assert run(footage / "cuts.mp4", "--out", out, "--frames", T, "--val-fraction", 0) == 1
    assert "different the INPUT list" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "train").iterdir()) == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("x")
    assert run(footage / "plain.mp4", "--out", tmp_path / "other", "--val-fraction", 0) == 1
    assert "holds files that prepare did not make" in capsys.readouterr().err


def test_ten_bit_and_hdr_videos_become_8bit_rgb_and_the_summary_says_so(tmp_path: Path, capsys) -> None:
    frames = shot(16, H, W, 11)
    write_video(tmp_path / "deep.mkv", frames, codec="ffv1", pix_fmt="yuv420p10le")
    write_video(tmp_path / "hdr.mkv", frames, codec="ffv1", pix_fmt="yuv420p10le", hdr=True)
    assert run(tmp_path / "deep.mkv", tmp_path / "hdr.mkv", "--out", tmp_path / "out", "--frames", T,
               "--val-fraction", 0) == 0
    text = capsys.readouterr().out
    assert f"converted {tmp_path / 'deep.mkv'}: yuv420p10le -> 8-bit RGB (swscale)\n" in text
    assert f"converted {tmp_path / 'hdr.mkv'}: yuv420p10le -> 8-bit RGB (swscale); HDR PQ" in text
    clip = clip_arrays(tmp_path / "out" / "train" / "deep_0000")
    assert clip.dtype == np.uint8 and clip.shape == (T, H, W, 3)
    assert np.abs(clip.astype(int) - np.stack(frames[:T])).mean() < 8  # the colours survive


def test_odd_sizes_keep_their_full_resolution(footage: Path, tmp_path: Path) -> None:
    assert run(footage / "odd.mkv", "--out", tmp_path / "out", "--frames", T, "--val-fraction", 0) == 0
    clips = sorted((tmp_path / "out" / "train").iterdir())
    assert len(clips) == 3 and clip_arrays(clips[0]).shape == (T, 46, 66, 3)


def test_clips_per_video_are_spread_over_the_video_and_stride_skips_frames(tmp_path: Path) -> None:
    write_video(tmp_path / "long.mp4", shot(96, H, W, 12, speed=1))
    out = tmp_path / "out"
    assert run(tmp_path / "long.mp4", "--out", out, "--frames", 4, "--clips-per-video", 3, "--stride", 2,
               "--val-fraction", 0) == 0
    index = source_index(tmp_path / "long.mp4")
    starts = []
    for clip in sorted((out / "train").iterdir()):
        frames = [index[f.tobytes()] for f in clip_arrays(clip)]
        assert frames == list(range(frames[0], frames[0] + 8, 2))
        starts.append(frames[0])
    assert starts == [0, 32, 64]


def test_patches_layout_is_read_by_the_projects_patch_reader(footage: Path, tmp_path: Path, one_torch_thread) -> None:
    from trainer.data import DataConfig, build_datasets
    from trainer.data.images import area_downscale

    out = tmp_path / "out"
    assert run(footage / "cuts.mp4", footage / "plain.mp4", "--out", out, "--layout", "patches",
               "--frames", 7, "--scale", 2, "--patch-size", 16, "--val-fraction", 0.5) == 0
    assert (out / "Patches" / "LR_7frames").is_dir() and (out / "Val" / "GT").is_dir()
    train, val = build_datasets(DataConfig(root=str(out), num_frames=7, scale=2, augment=False, patch_size=16))
    assert len(train) + len(val) == (6 + 4) * 2  # windows x tiles (two 32 px squares in 64x48)
    sample = val[0]
    assert sample["lr"].shape == (7, 3, 16, 16) and sample["gt"].shape == (3, 32, 32)
    gt = (sample["gt"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    lr = (sample["lr"][3].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(area_downscale(gt, 2), lr)


def test_raw_format_is_rejected_for_patches_and_missing_pyav_names_the_extra(tmp_path: Path, capsys,
                                                                            monkeypatch) -> None:
    assert run(tmp_path, "--out", tmp_path / "o", "--layout", "patches", "--format", "raw") == 2
    assert "--format raw is for --layout clips" in capsys.readouterr().err
    write_video(tmp_path / "v.mp4", shot(8, H, W, 1))
    monkeypatch.setitem(__import__("sys").modules, "av", None)
    assert run(tmp_path / "v.mp4", "--out", tmp_path / "o") == 1
    assert "pip install -e '.[video]'" in capsys.readouterr().err


def test_progress_is_plain_lines_without_a_terminal(footage: Path, tmp_path: Path, capsys) -> None:
    assert run(footage / "cuts.mp4", footage / "plain.mp4", "--out", tmp_path / "o", "--frames", T,
               "--workers", 2) == 0
    lines = capsys.readouterr().err.splitlines()
    assert sorted(line.split("]")[0] for line in lines) == ["[1/2", "[2/2"]
    assert any("cuts: 6 clips (" in line and line.endswith(") from 60 frames") for line in lines)


def test_videos_with_the_same_stem_get_distinct_clip_names(tmp_path: Path) -> None:
    for folder, seed in (("a", 1), ("b", 2)):
        write_video(tmp_path / "in" / folder / "take.mp4", shot(8, H, W, seed))
    assert run(tmp_path / "in", "--out", tmp_path / "out", "--frames", T, "--val-fraction", 0) == 0
    assert sorted(p.name for p in (tmp_path / "out" / "train").iterdir()) == ["take-2_0000", "take_0000"]
    assert manifest(tmp_path / "out")["videos"]["take-2"]["source"] == str(tmp_path / "in" / "b" / "take.mp4")


def test_a_terminal_gets_a_progress_bar(footage: Path, tmp_path: Path, capsys) -> None:
    from trainer.prepare import PrepareOptions, prepare

    options = PrepareOptions(inputs=[str(footage / "plain.mp4")], frames=T, val_fraction=0)
    prepare(options, tmp_path / "out", 1, tty=True)
    err = capsys.readouterr().err
    assert "prepare: 100%" in err and "frame" in err and "[1/1] plain: 4 clips" in err


def test_a_video_that_fails_part_way_loses_its_clips_and_is_named(footage: Path, tmp_path: Path, capsys,
                                                                  monkeypatch) -> None:
    import trainer.prepare.video as video
    from trainer.prepare.decode import DecodeError

    real = video.stream_frames

    def failing(path: Path, stride: int = 1):
        for i, frame in enumerate(real(path, stride)):
            if path.name == "cuts.mp4" and i == 30:
                raise DecodeError("decoding failed (Invalid data found when processing input)")
            yield frame

    monkeypatch.setattr(video, "stream_frames", failing)
    out = tmp_path / "out"
    assert run(footage / "cuts.mp4", footage / "plain.mp4", "--out", out, "--frames", T, "--val-fraction", 0) == 0
    assert sorted(p.name for p in (out / "train").iterdir()) == [f"plain_{i:04d}" for i in range(4)]
    assert f"skipped {footage / 'cuts.mp4'}: decoding failed" in capsys.readouterr().out
