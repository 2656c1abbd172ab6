"""BasicVSR++ on CPU: ours vs BasicSR 1.4.2's own implementation, forward and training step.

BasicSR is not importable beside this torch (its package __init__ pulls torchvision, cv2, lmdb...),
so `load_basicsr_reference()` reads only its architecture files from the PyPI sdist (cached under
~/.cache/vsrpp or $VSRPP_CACHE) with small stand-ins for its registry/logger, and gives its
`torchvision.ops.deform_conv2d` call our deformable conv. The tests use the same loader.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from trainer.models.deform import modulated_deform_conv2d

BASICSR_VERSION = "1.4.2"
_ARCH_FILES = ("arch_util", "spynet_arch", "edvr_arch", "basicvsr_arch", "basicvsrpp_arch")


def cache_dir() -> Path:
    return Path(os.environ.get("VSRPP_CACHE", Path.home() / ".cache" / "vsrpp"))


def basicsr_sdist(fetch: bool = True) -> Path | None:
    """The cached basicsr sdist, downloaded with pip once when missing; None when unavailable."""
    folder = cache_dir()
    found = sorted(folder.glob(f"basicsr-{BASICSR_VERSION}.tar.gz"))
    if found or not fetch:
        return found[0] if found else None
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
           "-d", str(folder), f"basicsr=={BASICSR_VERSION}"]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=180)
    except (subprocess.SubprocessError, OSError):
        return None
    return basicsr_sdist(fetch=False)


def _extract(sdist: Path) -> Path:
    """Unpack the architecture files (and the DCN wrapper) next to the sdist; returns basicsr/."""
    root = sdist.parent / f"basicsr-{BASICSR_VERSION}-src"
    wanted = {f"basicsr/archs/{n}.py" for n in _ARCH_FILES} | {"basicsr/ops/dcn/deform_conv.py"}
    if not all((root / w).is_file() for w in wanted):
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                rel = member.name.split("/", 1)[-1]
                if rel in wanted:
                    member.name = rel
                    tar.extract(member, root, filter="data")
    return root / "basicsr"


def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


def _load_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _deform_conv2d(x, offset, weight, bias=None, stride=1, padding=0, dilation=1, mask=None):
    """torchvision.ops.deform_conv2d's signature, served by our pure-PyTorch kernel."""
    return modulated_deform_conv2d(x, offset, mask, weight, bias, stride, padding, dilation, backend="torch")


class _Registry:
    def register(self, obj=None):
        return obj if obj is not None else (lambda o: o)


@contextmanager
def _stand_ins(src: Path) -> Iterator[None]:
    """Put BasicSR's package skeleton and a torchvision stand-in into sys.modules; restore after."""
    saved = dict(sys.modules)
    ops = _module("torchvision.ops", deform_conv2d=_deform_conv2d)
    sys.modules.update({
        "torchvision": _module("torchvision", ops=ops, __version__="0.15.0"), "torchvision.ops": ops,
        "distutils": _module("distutils"), "distutils.version": _module("distutils.version", LooseVersion=str),
        "basicsr": _module("basicsr", __path__=[str(src)]),
        "basicsr.utils": _module("basicsr.utils", __path__=[], get_root_logger=lambda: None),
        "basicsr.utils.registry": _module("basicsr.utils.registry", ARCH_REGISTRY=_Registry()),
        "basicsr.ops": _module("basicsr.ops", __path__=[]),
        "basicsr.archs": _module("basicsr.archs", __path__=[str(src / "archs")]),
    })
    try:
        dcn = _load_file("basicsr.ops.dcn.deform_conv", src / "ops" / "dcn" / "deform_conv.py")
        sys.modules["basicsr.ops.dcn"] = _module("basicsr.ops.dcn", __path__=[], **vars(dcn))
        yield
    finally:
        sys.modules.clear()
        sys.modules.update(saved)


def load_basicsr_reference(fetch: bool = True) -> type | None:
    """BasicSR 1.4.2's BasicVSRPlusPlus class, or None when its sdist cannot be had."""
    sdist = basicsr_sdist(fetch)
    if sdist is None:
        return None
    src = _extract(sdist)
    with _stand_ins(src):
        for name in _ARCH_FILES:
            mod = _load_file(f"basicsr.archs.{name}", src / "archs" / f"{name}.py")
    return mod.BasicVSRPlusPlus


def build_basicsr(cls: type, **kwargs) -> torch.nn.Module:
    """BasicSR only adds the alignment modules when CUDA is present; pretend while building."""
    real = torch.cuda.is_available
    torch.cuda.is_available = lambda: True
    try:
        return cls(**kwargs)
    finally:
        torch.cuda.is_available = real


# ---- benchmark -------------------------------------------------------------------------------


def _time_forward(model: torch.nn.Module, x: torch.Tensor, reps: int) -> float:
    model.eval()
    with torch.no_grad():
        model(x)  # warm-up
        start = time.perf_counter()
        for _ in range(reps):
            model(x)
    return (time.perf_counter() - start) / reps


def _time_train_step(model: torch.nn.Module, x: torch.Tensor, reps: int) -> float:
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    target = torch.rand(x.shape[0], x.shape[1], 3, x.shape[3] * 4, x.shape[4] * 4)

    def step() -> None:
        opt.zero_grad()
        loss = torch.sqrt((model(x) - target) ** 2 + 1e-12).mean()  # Charbonnier
        loss.backward()
        opt.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(reps):
        step()
    return (time.perf_counter() - start) / reps


def main() -> None:
    from trainer.models import build

    torch.set_num_threads(2)
    torch.manual_seed(0)
    x = torch.rand(1, 5, 3, 64, 64)
    ours = build("basicvsrpp", mid_channels=64, num_blocks=7, scale=4)
    ref_cls = load_basicsr_reference()
    ref = build_basicsr(ref_cls, mid_channels=64, num_blocks=7) if ref_cls else None
    if ref is not None:
        ref.load_state_dict(ours.state_dict(), strict=True)
    print("BasicVSR++ x4, mid 64, 7 blocks, input 1x5x3x64x64, 2 CPU threads, float32")
    print(f"{'':22}{'ours':>10}{'BasicSR 1.4.2':>16}{'ratio':>8}")
    for label, fn, reps in (("forward (s)", _time_forward, 3), ("train step (s)", _time_train_step, 2)):
        mine = fn(ours, x, reps)
        theirs = fn(ref, x, reps) if ref is not None else float("nan")
        print(f"{label:22}{mine:10.3f}{theirs:16.3f}{mine / theirs:7.2f}x")
    if ref is None:
        print("BasicSR reference unavailable (pip download basicsr==1.4.2 failed): only our figures shown")
    print("issue 7 quotes BasicSR with torchvision's CPU kernel: forward 5.2 s, train step 24.7 s (goal ratio <= 1.0x)")


if __name__ == "__main__":
    main()
