"""Modulated deformable convolution (DCNv2) that runs anywhere.

`modulated_deform_conv2d` uses torchvision's kernel when torchvision imports and otherwise a
pure-PyTorch version with the same semantics (torchvision's offset layout: per offset group and
kernel tap a (dy, dx) pair; bilinear sampling, zero outside the image; the mask multiplies each
sample). The pure version samples every (group, tap) with ONE grid_sample call and then does
one (grouped) matmul, so it is vectorised and differentiable by autograd.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

__all__ = ["ModulatedDeformConv2d", "modulated_deform_conv2d", "torchvision_available"]

try:  # torchvision is optional: wheels from PyPI often do not match the installed torch
    from torchvision.ops import deform_conv2d as _tv_deform_conv2d
except Exception:  # noqa: BLE001 - any import failure means "not available"
    _tv_deform_conv2d = None


def torchvision_available() -> bool:
    return _tv_deform_conv2d is not None


def modulated_deform_conv2d(
    x: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    backend: str = "auto",
) -> Tensor:
    """x [B,C,H,W], offset [B,2*G*kh*kw,Ho,Wo], mask [B,G*kh*kw,Ho,Wo], weight [O,C/groups,kh,kw]."""
    if backend not in ("auto", "torch", "torchvision"):
        raise ValueError(f"backend must be auto, torch or torchvision, got {backend!r}")
    if backend == "torchvision" or (backend == "auto" and _tv_deform_conv2d is not None):
        if _tv_deform_conv2d is None:
            raise RuntimeError("torchvision.ops.deform_conv2d is not importable here")
        return _tv_deform_conv2d(x, offset, weight, bias, _pair(stride), _pair(padding), _pair(dilation), mask)
    return _deform_conv2d_torch(x, offset, mask, weight, bias, _pair(stride), _pair(padding), _pair(dilation))


def _base_positions(
    out_hw: tuple[int, int], kernel: tuple[int, int], stride, padding, dilation, like: Tensor
) -> tuple[Tensor, Tensor]:
    """Undeformed sampling rows/cols per tap: ys, xs of shape [K, Ho, Wo] (K = kh*kw, row-major)."""
    (ho, wo), (kh, kw) = out_hw, kernel
    opts = {"device": like.device, "dtype": like.dtype}
    oy = torch.arange(ho, **opts) * stride[0] - padding[0]
    ox = torch.arange(wo, **opts) * stride[1] - padding[1]
    ky = torch.arange(kh, **opts) * dilation[0]
    kx = torch.arange(kw, **opts) * dilation[1]
    ys = (ky.view(kh, 1, 1, 1) + oy.view(1, 1, ho, 1)).expand(kh, kw, ho, wo).reshape(kh * kw, ho, wo)
    xs = (kx.view(1, kw, 1, 1) + ox.view(1, 1, 1, wo)).expand(kh, kw, ho, wo).reshape(kh * kw, ho, wo)
    return ys, xs


def _check_shapes(x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, out_hw: tuple[int, int]) -> int:
    b, c, _, _ = x.shape
    k = weight.shape[2] * weight.shape[3]
    if offset.shape[1] % (2 * k) or offset.shape[0] != b or tuple(offset.shape[2:]) != out_hw:
        raise ValueError(f"offset must be [{b}, 2*G*{k}, {out_hw[0]}, {out_hw[1]}], got {list(offset.shape)}")
    groups = offset.shape[1] // (2 * k)
    if c % groups:
        raise ValueError(f"{c} input channels do not split into {groups} offset groups")
    if tuple(mask.shape) != (b, groups * k, *out_hw):
        raise ValueError(f"mask must be [{b}, {groups * k}, {out_hw[0]}, {out_hw[1]}], got {list(mask.shape)}")
    if c % weight.shape[1]:
        raise ValueError(f"weight {list(weight.shape)} does not fit {c} input channels")
    return groups


def _deform_conv2d_torch(x, offset, mask, weight, bias, stride, padding, dilation) -> Tensor:
    b, c, h, w = x.shape
    out_ch, c_per_group, kh, kw = weight.shape
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    g = _check_shapes(x, offset, mask, weight, (ho, wo))
    k = kh * kw
    ys, xs = _base_positions((ho, wo), (kh, kw), stride, padding, dilation, offset)
    off = offset.view(b, g, k, 2, ho, wo)
    py = ys + off[:, :, :, 0]  # (B, G, K, Ho, Wo) absolute row
    px = xs + off[:, :, :, 1]
    # pixel centres -> [-1, 1] for align_corners=False; zeros padding == torchvision's border rule
    grid = torch.stack(((2 * px + 1) / w - 1, (2 * py + 1) / h - 1), dim=-1)
    grid = grid.view(b * g, k * ho, wo, 2)
    cols = F.grid_sample(x.reshape(b * g, c // g, h, w), grid, mode="bilinear",
                         padding_mode="zeros", align_corners=False)  # (B*G, C/G, K*Ho, Wo)
    cols = cols.view(b, g, c // g, k, ho, wo) * mask.view(b, g, 1, k, ho, wo)
    conv_groups = c // c_per_group
    cols = cols.reshape(b, conv_groups, c_per_group * k, ho * wo)  # channel-major, tap-minor
    wmat = weight.reshape(conv_groups, out_ch // conv_groups, c_per_group * k)
    out = torch.matmul(wmat, cols).reshape(b, out_ch, ho, wo)  # (B, O, Ho, Wo)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


class ModulatedDeformConv2d(nn.Module):
    """DCNv2 layer holding `weight` [O, C/groups, k, k] and `bias` [O]; offsets/masks come from outside."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
        dilation: int = 1, groups: int = 1, deform_groups: int = 1, bias: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups or in_channels % deform_groups:
            raise ValueError(f"channels {in_channels}->{out_channels} do not split into groups={groups}, "
                             f"deform_groups={deform_groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.groups, self.deform_groups = groups, deform_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        bound = 1.0 / math.sqrt(in_channels * self.kernel_size[0] * self.kernel_size[1])
        nn.init.uniform_(self.weight, -bound, bound)

    def deform(self, x: Tensor, offset: Tensor, mask: Tensor) -> Tensor:
        return modulated_deform_conv2d(x, offset, mask, self.weight, self.bias, self.stride,
                                       self.padding, self.dilation)

    def forward(self, x: Tensor, offset: Tensor, mask: Tensor) -> Tensor:
        return self.deform(x, offset, mask)
