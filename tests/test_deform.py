"""The pure-PyTorch modulated deformable conv against a direct per-pixel reference."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.models.deform import ModulatedDeformConv2d, modulated_deform_conv2d

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _bilinear(img: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """torchvision's rule: 0 when the point is a full pixel outside; missing corners count 0."""
    c, h, w = img.shape
    if y <= -1 or y >= h or x <= -1 or x >= w:
        return img.new_zeros(c)
    y0, x0 = math.floor(y), math.floor(x)
    out = img.new_zeros(c)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * img[:, yy, xx]
    return out


def _reference(x, offset, mask, weight, bias, stride, pad, dil):
    b, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    _, _, ho, wo = offset.shape
    k = kh * kw
    groups = offset.shape[1] // (2 * k)
    cpg = c // groups
    conv_groups = c // cg
    out = torch.zeros(b, o, ho, wo, dtype=x.dtype)
    for n in range(b):
        for i in range(ho):
            for j in range(wo):
                col = torch.zeros(c, k, dtype=x.dtype)
                for ch in range(c):
                    g = ch // cpg
                    for t in range(k):
                        ki, kj = divmod(t, kw)
                        dy = offset[n, 2 * (g * k + t), i, j].item()
                        dx = offset[n, 2 * (g * k + t) + 1, i, j].item()
                        y = i * stride - pad + ki * dil + dy
                        xx = j * stride - pad + kj * dil + dx
                        col[ch, t] = _bilinear(x[n, ch:ch + 1], y, xx)[0] * mask[n, g * k + t, i, j]
                for oc in range(o):
                    cg0 = (oc // (o // conv_groups)) * cg
                    out[n, oc, i, j] = (weight[oc] * col[cg0:cg0 + cg].view(cg, kh, kw)).sum()
                    if bias is not None:
                        out[n, oc, i, j] += bias[oc]
    return out


CASES = [  # (b, c, h, w, o, k, stride, pad, dil, offset_groups, conv_groups, offset_scale)
    (1, 4, 5, 6, 3, 3, 1, 1, 1, 2, 1, 1.5),
    (2, 4, 4, 4, 2, 3, 1, 1, 1, 4, 2, 3.0),  # offsets far outside the image too
    (1, 2, 6, 5, 2, 3, 2, 2, 2, 1, 1, 0.7),
    (1, 3, 1, 4, 2, 1, 1, 0, 1, 1, 1, 0.5),  # a one-pixel-high image
]


@pytest.mark.parametrize("case", CASES)
def test_pure_torch_deform_conv_matches_per_pixel_reference(case):
    b, c, h, w, o, k, stride, pad, dil, g, cgroups, scale = case
    gen = torch.Generator().manual_seed(sum(case[:6]))
    x = torch.randn(b, c, h, w, generator=gen, dtype=torch.float64)
    ho = (h + 2 * pad - dil * (k - 1) - 1) // stride + 1
    wo = (w + 2 * pad - dil * (k - 1) - 1) // stride + 1
    offset = torch.randn(b, 2 * g * k * k, ho, wo, generator=gen, dtype=torch.float64) * scale
    offset[0, 0, 0, 0] = 0.0  # one exactly integer position
    mask = torch.rand(b, g * k * k, ho, wo, generator=gen, dtype=torch.float64)
    weight = torch.randn(o, c // cgroups, k, k, generator=gen, dtype=torch.float64)
    bias = torch.randn(o, generator=gen, dtype=torch.float64)
    got = modulated_deform_conv2d(x, offset, mask, weight, bias, stride, pad, dil, backend="torch")
    want = _reference(x, offset, mask, weight, bias, stride, pad, dil)
    torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)


def test_zero_offsets_and_unit_mask_equal_a_plain_convolution():
    x = torch.randn(2, 16, 9, 7, dtype=torch.float64)
    layer = ModulatedDeformConv2d(16, 8, 3, padding=1, deform_groups=4).double()
    offset = torch.zeros(2, 2 * 4 * 9, 9, 7, dtype=torch.float64)
    mask = torch.ones(2, 4 * 9, 9, 7, dtype=torch.float64)
    want = torch.nn.functional.conv2d(x, layer.weight, layer.bias, padding=1)
    torch.testing.assert_close(layer(x, offset, mask), want)


def test_gradients_flow_to_input_offsets_masks_and_weights():
    x = torch.randn(1, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    offset = (torch.randn(1, 2 * 2 * 9, 4, 4, dtype=torch.float64) * 0.3).requires_grad_()
    mask = torch.rand(1, 2 * 9, 4, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)

    def fn(a, b, m, wt):
        return modulated_deform_conv2d(a, b, m, wt, None, 1, 1, 1, backend="torch")

    assert torch.autograd.gradcheck(fn, (x, offset, mask, weight), eps=1e-6, atol=1e-5, fast_mode=True)


def test_wrong_offset_shape_is_a_clear_error():
    x = torch.randn(1, 4, 5, 5)
    with pytest.raises(ValueError, match="offset must be"):
        modulated_deform_conv2d(x, torch.zeros(1, 17, 5, 5), torch.ones(1, 9, 5, 5),
                                torch.randn(2, 4, 3, 3), padding=1, backend="torch")
    with pytest.raises(ValueError, match="backend"):
        modulated_deform_conv2d(x, torch.zeros(1, 18, 5, 5), torch.ones(1, 9, 5, 5),
                                torch.randn(2, 4, 3, 3), padding=1, backend="cuda")
