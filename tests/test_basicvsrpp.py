"""BasicVSR++: shapes, options, flow freezing, released-weight loading, clear errors."""

from __future__ import annotations

import pytest
import torch

from tests.released_support import mmagic_names
from trainer.models import MODEL_INFO, build
from trainer.models import basicvsrpp as bvpp
from trainer.models.basicvsrpp import flow_frozen
from trainer.models.convert import convert_state_dict
from trainer.models.spynet import SpyNet

TINY = {"mid_channels": 16, "num_blocks": 1, "hr_channels": 8}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny4():
    torch.manual_seed(0)
    return build("basicvsrpp", **TINY)


@pytest.mark.parametrize("scale", [2, 3])
def test_every_frame_is_upscaled_at_the_asked_scale(scale):
    model = build("basicvsrpp", scale=scale, num_frames=3, **TINY)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 3, 12, 10))
    assert out.shape == (2, 3, 3, 12 * scale, 10 * scale)


def test_registry_marks_basicvsrpp_many_to_many_and_accepts_generic_names():
    assert MODEL_INFO["basicvsrpp"]["many_to_many"] is True
    model = build("basicvsrpp", num_frames=5, n_feats=32, n_blocks=2, scale=3)
    assert model.mid_channels == 32 and len(model.backbone["forward_1"].main[2]) == 2


@pytest.mark.parametrize("kwargs, words", [
    ({"mid_channels": 20}, "multiple of 16"),
    ({"scale": 5}, "scale must be 2, 3 or 4"),
    ({"num_frames": 0}, "num_frames"),
    ({"n_feats": 32, "mid_channels": 16}, "contradicts"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_options_are_clear_errors(kwargs, words):
    with pytest.raises(ValueError, match=words):
        build("basicvsrpp", **kwargs)


def test_wrong_input_shape_is_a_clear_error(tiny4):
    with pytest.raises(ValueError, match=r"\[B, T, 3, h, w\]"):
        tiny4(torch.rand(1, 3, 8, 8))


def test_single_frame_and_mirrored_sequences_work(tiny4, monkeypatch):
    with torch.no_grad():
        assert tiny4(torch.rand(1, 1, 3, 8, 8)).shape == (1, 1, 3, 32, 32)
        half = torch.rand(1, 2, 3, 8, 8)
        mirrored = torch.cat([half, half.flip(1)], dim=1)
        shortcut = tiny4(mirrored)  # forward flows taken from the backward ones
        monkeypatch.setattr(bvpp, "_is_mirror_extended", lambda lqs: False)
        torch.testing.assert_close(shortcut, tiny4(mirrored))


def test_activation_checkpointing_gives_the_same_output_and_gradients():
    torch.manual_seed(1)
    plain = build("basicvsrpp", **TINY)
    ckpt = build("basicvsrpp", checkpointing=True, **TINY)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 3, 8, 8)
    out_a, out_b = plain(x), ckpt(x)
    torch.testing.assert_close(out_a, out_b)
    out_a.mean().backward()
    out_b.mean().backward()
    grads = dict(plain.named_parameters())
    for name, p in ckpt.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, msg=name)


def test_flow_is_frozen_before_fix_iter_and_trains_slower_after(tiny4):
    assert flow_frozen(0, 5000) and flow_frozen(4999, 5000) and not flow_frozen(5000, 5000)
    model = build("basicvsrpp", spynet_fix_iter=3, spynet_lr_mul=0.25, **TINY)
    groups = model.param_groups(1e-4)
    assert [g["name"] for g in groups] == ["main", "spynet"]
    assert groups[1]["lr"] == pytest.approx(2.5e-5) and groups[1]["lr_mult"] == 0.25
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    x = torch.rand(1, 3, 3, 8, 8)
    for step, trains in ((2, False), (3, True)):
        model.zero_grad(set_to_none=True)
        assert model.set_flow_trainable(step) is trains
        model(x).mean().backward()
        spy_grad = model.spynet.basic_module[5].basic_module[8].weight.grad
        assert (spy_grad is not None) is trains
        assert model.conv_last.weight.grad is not None


def test_mmagic_checkpoint_names_convert_to_a_strict_load(tiny4):
    converted = convert_state_dict(mmagic_names(tiny4.state_dict()))
    fresh = build("basicvsrpp", **TINY)
    fresh.load_state_dict(converted, strict=True)
    torch.testing.assert_close(fresh.conv_last.weight, tiny4.conv_last.weight)


def test_spynet_loads_basicsr_and_mmagic_release_files(tmp_path, tiny4):
    params = {k: v for k, v in tiny4.spynet.state_dict().items() if k not in ("mean", "std")}
    torch.save({"params": params}, tmp_path / "basicsr.pth")  # BasicSR's file has no mean/std
    mm = mmagic_names({f"spynet.{k}": v for k, v in params.items()})
    torch.save(mm, tmp_path / "mmagic.pth")
    for name in ("basicsr.pth", "mmagic.pth"):
        model = build("basicvsrpp", spynet_pretrained=str(tmp_path / name), **TINY)
        torch.testing.assert_close(model.spynet.basic_module[3].basic_module[4].bias,
                                   tiny4.spynet.basic_module[3].basic_module[4].bias)


def test_unusable_spynet_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        SpyNet(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        SpyNet(tmp_path / "junk.pth")
    torch.save({"params": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a SPyNet"):
        SpyNet(tmp_path / "other.pth")
