"""SPyNet optical flow (Ranjan & Black 2017) with BasicSR's parameter layout, and `flow_warp`.

Parameter names match BasicSR's released `spynet_sintel_final-*.pth` (`{'params': ...}`):
`basic_module.{0..5}.basic_module.{0,2,4,6,8}.{weight,bias}`; `mean`/`std` are buffers.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SpyNet", "flow_warp"]

_LEVELS = 6


def flow_warp(x: Tensor, flow: Tensor, padding_mode: str = "zeros") -> Tensor:
    """Sample x [N,C,H,W] at (pixel + flow); flow is [N,H,W,2] in pixels, (dx, dy) order."""
    if x.shape[-2:] != flow.shape[1:3]:
        raise ValueError(f"flow {list(flow.shape)} does not match features {list(x.shape)}")
    _, _, h, w = x.shape
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype),
                            torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij")
    px = gx + flow[..., 0]
    py = gy + flow[..., 1]
    grid = torch.stack((2.0 * px / max(w - 1, 1) - 1.0, 2.0 * py / max(h - 1, 1) - 1.0), dim=3)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)


def _basic_module() -> nn.Sequential:
    """Five 7x7 convs 8->32->64->32->16->2 with ReLUs between (indices 0,2,4,6,8 hold weights)."""
    chans = (8, 32, 64, 32, 16, 2)
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:], strict=True)):
        layers.append(nn.Conv2d(cin, cout, 7, 1, 3))
        if i < len(chans) - 2:
            layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


class _BasicModule(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.basic_module = _basic_module()

    def forward(self, x: Tensor) -> Tensor:
        return self.basic_module(x)


class SpyNet(nn.Module):
    """flow(ref, supp) [N,2,H,W]: where each ref pixel is found in supp (dx, dy in pixels)."""

    def __init__(self, pretrained: str | Path | None = None) -> None:
        super().__init__()
        self.basic_module = nn.ModuleList(_BasicModule() for _ in range(_LEVELS))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        if pretrained:
            self.load_pretrained(pretrained)

    def load_pretrained(self, path: str | Path) -> None:
        """Load BasicSR's `{'params': ...}` (or mmagic's) SPyNet file; every conv must be present."""
        from .convert import load_weights_file, to_basicsr_spynet

        state = to_basicsr_spynet(load_weights_file(path))
        state.setdefault("mean", self.mean)
        state.setdefault("std", self.std)
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{path} is not a SPyNet weights file: {exc}") from exc

    def _pyramid(self, img: Tensor) -> list[Tensor]:
        """ImageNet-normalised image and 5 average-pooled halvings, coarsest first."""
        levels = [(img - self.mean) / self.std]
        for _ in range(_LEVELS - 1):
            levels.append(F.avg_pool2d(levels[-1], kernel_size=2, stride=2, count_include_pad=False))
        return levels[::-1]

    def _flow_at_multiple_of_32(self, ref: Tensor, supp: Tensor) -> Tensor:
        refs, supps = self._pyramid(ref), self._pyramid(supp)
        n, _, h, w = refs[0].shape
        flow = ref.new_zeros(n, 2, h, w)
        for level, module in enumerate(self.basic_module):
            if level > 0:
                flow = F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=True) * 2.0
            warped = flow_warp(supps[level], flow.permute(0, 2, 3, 1), padding_mode="border")
            flow = flow + module(torch.cat([refs[level], warped, flow], dim=1))
        return flow

    def forward(self, ref: Tensor, supp: Tensor) -> Tensor:
        if ref.shape != supp.shape:
            raise ValueError(f"ref {list(ref.shape)} and supp {list(supp.shape)} differ")
        h, w = ref.shape[2:]
        h_up, w_up = (h + 31) // 32 * 32, (w + 31) // 32 * 32  # (not -(-h // 32): ONNX division truncates)
        ref = F.interpolate(ref, size=(h_up, w_up), mode="bilinear", align_corners=False)
        supp = F.interpolate(supp, size=(h_up, w_up), mode="bilinear", align_corners=False)
        flow = F.interpolate(self._flow_at_multiple_of_32(ref, supp), size=(h, w), mode="bilinear",
                             align_corners=False)
        # plain arithmetic, not a torch.tensor of the sizes, so an exported graph keeps them dynamic
        return torch.cat([flow[:, :1] * (w / w_up), flow[:, 1:] * (h / h_up)], dim=1)
