from __future__ import annotations

import pytest

import ckpt
from trainer.report.console import Console, archive_run, choose_checkpoint
from trainer.train.checkpoint import ResumeError


def _run_with_checkpoints(run_dir, steps=(10, 20)):
    run_dir.mkdir(parents=True, exist_ok=True)
    for step in steps:
        ckpt.save_checkpoint(run_dir / ckpt.checkpoint_name(step), {"step": step, "metrics": {"quality": 0.5}})
    (run_dir / "training.log").write_text("old log\n")
    return run_dir


def test_without_a_tty_ask_means_latest(tmp_path):
    run_dir = _run_with_checkpoints(tmp_path / "run")
    chosen = choose_checkpoint(run_dir, "ask", tty=False, input_fn=_no_input)
    assert chosen["step"] == 20


def test_new_run_from_the_start_prompt_moves_old_files_aside_and_deletes_nothing(tmp_path):
    run_dir = _run_with_checkpoints(tmp_path / "run")
    said: list[str] = []
    chosen = choose_checkpoint(run_dir, "ask", tty=True, input_fn=lambda _p: "n", print_fn=said.append)
    assert chosen is None
    archives = [p for p in run_dir.iterdir() if p.name.startswith("archive-")]
    assert len(archives) == 1 and str(archives[0]) in said[-1]
    assert sorted(p.name for p in archives[0].iterdir()) == [
        "checkpoint_step_0000010.pth", "checkpoint_step_0000020.pth", "training.log"]
    assert [p.name for p in run_dir.iterdir()] == [archives[0].name]


def test_resume_from_the_start_prompt_shows_the_table_and_takes_a_choice(tmp_path):
    run_dir = _run_with_checkpoints(tmp_path / "run")
    answers = iter(["", "1"])  # Enter = resume; then row 1 of the table
    said: list[str] = []
    chosen = choose_checkpoint(run_dir, "ask", tty=True, input_fn=lambda _p: next(answers), print_fn=said.append)
    assert chosen["step"] == 10
    assert any("AVAILABLE CHECKPOINTS" in line for line in said)


def test_the_start_prompt_takes_only_its_own_answers_and_asks_again_otherwise(tmp_path):
    run_dir = _run_with_checkpoints(tmp_path / "run")
    answers = iter(["f", "R", "2"])  # "f" is no answer the prompt offers
    said: list[str] = []
    chosen = choose_checkpoint(run_dir, "ask", tty=True, input_fn=lambda _p: next(answers), print_fn=said.append)
    assert "please answer R or N (got 'f')" in said
    assert chosen["step"] == 20


def test_resume_never_archives_an_existing_run(tmp_path):
    run_dir = _run_with_checkpoints(tmp_path / "run")
    assert choose_checkpoint(run_dir, "never", tty=False, print_fn=lambda _m: None) is None
    assert not ckpt.list_checkpoints(run_dir)
    assert len(list(run_dir.glob("archive-*/*.pth"))) == 2


def test_a_missing_step_is_a_clear_error_and_an_empty_run_starts_fresh(tmp_path):
    run_dir = _run_with_checkpoints(tmp_path / "run")
    with pytest.raises(ResumeError, match=r"--resume 15: no usable checkpoint .*10, 20"):
        choose_checkpoint(run_dir, "15", tty=False)
    assert choose_checkpoint(tmp_path / "empty", "latest", tty=False) is None
    assert choose_checkpoint(tmp_path / "empty", "ask", tty=True, input_fn=_no_input) is None


def test_archiving_twice_in_the_same_second_keeps_both(tmp_path):
    (tmp_path / "a.txt").write_text("1")
    first = archive_run(tmp_path)
    (tmp_path / "a.txt").write_text("2")
    second = archive_run(tmp_path)
    assert first != second and (first / "a.txt").read_text() == "1" and (second / "a.txt").read_text() == "2"


def test_without_a_tty_progress_is_plain_lines(capsys):
    console = Console(total=10, log_every_s=0.0, tty=False)
    status = {"iteration": 0, "max_iterations": 10, "total_loss": 0.5, "learn_rate": 1e-4,
              "iter_speed": 2.0, "time_remaining": "00:00:04"}
    console.progress(3, status)
    assert capsys.readouterr().out.startswith("it 3/10 | loss 0.5000 | lr 1.00e-04 | 2.00 it/s | ETA 00:00:04")


def _no_input(_prompt: str) -> str:
    raise AssertionError("must not prompt")
