from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainer.models import MODEL_INFO, build, register


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("n_feats", "n_blocks", "millions"),
    [(128, 32, 10.88), (64, 24, 2.13), (96, 24, 4.79), (160, 32, 16.99), (192, 32, 24.47)],
)
def test_vsrpp_has_the_original_parameter_counts(n_feats: int, n_blocks: int, millions: float) -> None:
    with torch.device("meta"):
        model = build("vsrpp", num_frames=5, n_feats=n_feats, n_blocks=n_blocks, scale=3)
    assert round(_params(model) / 1e6, 2) == millions


@pytest.mark.parametrize(("scale", "frames"), [(2, 3), (3, 5), (4, 7)])
def test_vsrpp_maps_frames_to_the_upscaled_centre_frame(scale: int, frames: int) -> None:
    model = build("vsrpp", num_frames=frames, n_feats=8, n_blocks=2, scale=scale)
    x = torch.rand(2, frames, 3, 6, 5)
    assert model(x).shape == (2, 3, 6 * scale, 5 * scale)
    assert MODEL_INFO["vsrpp"] == {"many_to_many": False}


def test_untrained_vsrpp_starts_near_the_bilinear_baseline() -> None:
    torch.manual_seed(0)
    model = build("vsrpp", n_feats=8, n_blocks=2)
    x = torch.rand(1, 5, 3, 8, 8)
    base = F.interpolate(x[:, 2], scale_factor=3, mode="bilinear", align_corners=False)
    assert (model(x) - base).abs().mean() < 0.05


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    plain = build("vsrpp", n_feats=8, n_blocks=4)
    ckpt = build("vsrpp", n_feats=8, n_blocks=4, checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.rand(1, 5, 3, 6, 6)
    for model in (plain, ckpt):
        model(x).square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name


def test_activity_is_recorded_only_when_enabled_and_reset_on_read() -> None:
    model = build("vsrpp", n_feats=8, n_blocks=4)
    x = torch.rand(1, 5, 3, 6, 6)
    model(x)
    assert model.activity() == {}
    model.track_activity = True
    model(x)
    model(x)
    act = model.activity()
    assert set(act) >= {"feat", "backward.block1", "forward.fuse", "fusion", "out"}
    assert all(v > 0 for v in act.values())
    assert model.activity() == {}
    assert "_activity_sum" not in model.state_dict()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"num_frames": 4}, "odd"), ({"num_frames": 1}, "odd"), ({"scale": 5}, "scale"),
     ({"n_blocks": 3}, "even"), ({"n_feats": 0}, "n_feats"), ({"bogus": 1}, "bogus")],
)
def test_bad_model_arguments_are_rejected_with_a_reason(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build("vsrpp", **kwargs)


def test_wrong_input_shape_is_rejected() -> None:
    model = build("vsrpp", n_feats=8, n_blocks=2)
    with pytest.raises(ValueError, match="5 frames"):
        model(torch.rand(1, 3, 3, 6, 6))
    with pytest.raises(ValueError, match=r"\[B, T, 3, h, w\]"):
        model(torch.rand(1, 3, 6, 6))


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known models: .*vsrpp"):
        build("nope")


def test_registry_accepts_new_many_to_many_models() -> None:
    @register("test_identity_m2m", many_to_many=True)
    def _factory(scale: int = 2) -> torch.nn.Module:
        return torch.nn.Upsample(scale_factor=scale)

    assert MODEL_INFO["test_identity_m2m"]["many_to_many"] is True
    assert isinstance(build("test_identity_m2m", scale=3), torch.nn.Upsample)
