"""The original VSR++ network: bidirectional recurrence started from the centre frame.

Parameter counts match the original (n_feats/n_blocks: 128/32 = 10.88 M, 64/24 = 2.13 M,
96/24 = 4.79 M): shared 3x3 feature conv 3->nf; per branch a 1x1 fuse 2nf->nf and a trunk of
n_blocks/2 residual blocks shared across time steps; final 1x1 fusion 2nf->nf; upsampler
conv3x3 nf->s*s*nf + PixelShuffle(s) + conv3x3 nf->3; global bilinear residual of the centre frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from . import register

__all__ = ["VSRPP", "ResidualBlock"]


def _mean_abs(y: Tensor) -> Tensor:
    """mean |y| as one fused reduction (no |y| temporary)."""
    return torch.linalg.vector_norm(y.detach(), ord=1) / y.numel()


class ResidualBlock(nn.Module):
    """conv3x3 -> LeakyReLU(0.1) -> conv3x3, plus identity."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv2 = nn.Conv2d(nf, nf, 3, padding=1)
        for conv in (self.conv1, self.conv2):  # small residual branches: start near identity
            nn.init.kaiming_normal_(conv.weight, a=0.1)
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.1))


class _Branch(nn.Module):
    """One propagation direction: 1x1 fuse cat(prop, feat_i), then the shared trunk."""

    def __init__(self, nf: int, n_res: int) -> None:
        super().__init__()
        self.fuse = nn.Conv2d(2 * nf, nf, 1)
        self.trunk = nn.ModuleList(ResidualBlock(nf) for _ in range(n_res))


def _validate(num_frames: int, n_feats: int, n_blocks: int, scale: int) -> None:
    if not isinstance(num_frames, int) or num_frames < 3 or num_frames % 2 == 0:
        raise ValueError(f"num_frames must be an odd integer >= 3, got {num_frames!r}")
    if not isinstance(n_feats, int) or n_feats < 1:
        raise ValueError(f"n_feats must be a positive integer, got {n_feats!r}")
    if not isinstance(n_blocks, int) or n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"n_blocks must be an even integer >= 2 (n_blocks/2 per branch), got {n_blocks!r}")
    if scale not in (2, 3, 4):
        raise ValueError(f"scale must be 2, 3 or 4, got {scale!r}")


class VSRPP(nn.Module):
    """[B, T, 3, h, w] in [0, 1] -> centre frame [B, 3, s*h, s*w]."""

    def __init__(
        self,
        num_frames: int = 5,
        n_feats: int = 128,
        n_blocks: int = 32,
        scale: int = 3,
        checkpointing: bool = False,
    ) -> None:
        super().__init__()
        _validate(num_frames, n_feats, n_blocks, scale)
        self.num_frames, self.scale, self.checkpointing = num_frames, scale, checkpointing
        nf = n_feats
        self.feat = nn.Conv2d(3, nf, 3, padding=1)
        self.backward_branch = _Branch(nf, n_blocks // 2)
        self.forward_branch = _Branch(nf, n_blocks // 2)
        self.fusion = nn.Conv2d(2 * nf, nf, 1)
        self.upconv = nn.Conv2d(nf, nf * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        self.out = nn.Conv2d(nf, 3, 3, padding=1)
        nn.init.zeros_(self.out.bias)
        self.out.weight.data.mul_(0.1)  # start close to the bilinear baseline
        self.layer_names = ["feat", *self._branch_names("backward", n_blocks // 2),
                            *self._branch_names("forward", n_blocks // 2), "fusion", "upsample", "out"]
        self.track_activity = False
        self.register_buffer("_activity_sum", torch.zeros(len(self.layer_names)), persistent=False)
        self._activity_count = 0

    @staticmethod
    def _branch_names(branch: str, n_res: int) -> list[str]:
        return [f"{branch}.fuse", *(f"{branch}.block{i}" for i in range(n_res))]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(f"expected input [B, T, 3, h, w], got {list(x.shape)}")
        b, t, _, h, w = x.shape
        if t != self.num_frames:
            raise ValueError(f"model was built for {self.num_frames} frames, got {t}")
        acts: list[Tensor] | None = [] if self.track_activity else None
        feats = F.leaky_relu(self.feat(x.reshape(b * t, 3, h, w)), 0.1).view(b, t, -1, h, w)
        self._note(acts, feats)
        c = t // 2
        back = self._propagate(self.backward_branch, feats, range(c, t), acts)
        fwd = self._propagate(self.forward_branch, feats, range(c, -1, -1), acts)
        fused = self.fusion(torch.cat([back, fwd], dim=1))
        self._note(acts, fused)
        up = F.leaky_relu(self.shuffle(self.upconv(fused)), 0.1)
        self._note(acts, up)
        res = self.out(up)
        self._note(acts, res)
        if acts is not None:
            self._activity_sum.add_(torch.stack(acts).to(self._activity_sum.dtype))
            self._activity_count += 1
        base = F.interpolate(x[:, c], scale_factor=self.scale, mode="bilinear", align_corners=False)
        return base + res

    def _propagate(self, branch: _Branch, feats: Tensor, order: range, acts: list[Tensor] | None) -> Tensor:
        """Walk the frames in `order`, starting the state from the first (centre) frame's features."""
        prop = feats[:, order[0]]
        per_layer: list[Tensor] | None = [] if acts is not None else None
        for i in order:
            prop = branch.fuse(torch.cat([prop, feats[:, i]], dim=1))
            step = [prop]
            for block in branch.trunk:
                if self.checkpointing and torch.is_grad_enabled():
                    prop = checkpoint(block, prop, use_reentrant=False)
                else:
                    prop = block(prop)
                step.append(prop)
            if per_layer is not None:
                per_layer.append(torch.stack([_mean_abs(s) for s in step]))
        if acts is not None and per_layer is not None:
            acts.extend(torch.stack(per_layer).mean(0).unbind())
        return prop

    @staticmethod
    def _note(acts: list[Tensor] | None, y: Tensor) -> None:
        if acts is not None:
            acts.append(_mean_abs(y))

    def activity(self, reset: bool = True) -> dict[str, float]:
        """Mean |output| per layer since the last read (one device->host copy); {} when not tracked."""
        if self._activity_count == 0:
            return {}
        values = (self._activity_sum / self._activity_count).cpu().tolist()
        if reset:
            self._activity_sum.zero_()
            self._activity_count = 0
        return dict(zip(self.layer_names, values, strict=True))


@register("vsrpp", many_to_many=False)
def build_vsrpp(
    num_frames: int = 5, n_feats: int = 128, n_blocks: int = 32, scale: int = 3, checkpointing: bool = False
) -> VSRPP:
    return VSRPP(num_frames=num_frames, n_feats=n_feats, n_blocks=n_blocks, scale=scale, checkpointing=checkpointing)
