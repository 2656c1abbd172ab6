# VSR++: video super-resolution training with a live remote dashboard.
# `just --list` documents every recipe.

set positional-arguments := true

# List the recipes.
default:
    @just --list

# Train (default: small model on the embedded data set, CUDA if present). ARGS go to `python -m trainer`.
train *args:
    python -m trainer "$@"

# Run the dashboard/API process against a trainer's sockets. ARGS go to `python -m monitor`.
monitor *args:
    python -m monitor "$@"

# Mock trainer publishing realistic frames + monitor on http://127.0.0.1:5051.
demo *args:
    python -m monitor.demo "$@"

# Scripted commands: `just ctl send validate`, `just ctl watch`, `just ctl keys DIR`.
ctl *args:
    python -m protocol "$@"

# List a run folder's checkpoints: `just ckpt list runs/default`.
ckpt *args:
    python -m ckpt "$@"

# Upscale frames with a trained checkpoint: `just upscale --checkpoint F --input DIR --output DIR`.
upscale *args:
    python -m trainer.upscale "$@"

# Videos to a training set: `just prepare VIDEOS... --out data/mine` (see README).
prepare *args:
    python -m trainer.prepare "$@"

# PSNR/SSIM (RGB and Y) of a checkpoint against ground truth, bicubic/bilinear side by side.
evaluate *args:
    python -m trainer.evaluate "$@"

# Export a checkpoint to ONNX: `just export --checkpoint F --out model.onnx`.
export *args:
    python -m trainer.export "$@"

# Lint (ruff).
lint:
    ruff check .

# Lint, then the whole test suite (quick fault suite included). ARGS go to pytest.
test *args:
    ruff check .
    python -m pytest -m "not slow" "$@"

# The long fault suite (SIGKILL x20+, 10,000 bad requests, restart cycles, long HTTP fuzz); tally in test-artifacts/faults.jsonl.
chaos *args:
    python -m pytest -m slow tests/test_faults_kill.py tests/test_faults_live.py tests/test_faults_http.py tests/test_ckpt_crash.py "$@"

# Benchmarks: prints the figures quoted in the issues' notes.
bench *args:
    python -m bench "$@"
