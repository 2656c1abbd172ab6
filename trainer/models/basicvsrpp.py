"""BasicVSR++ (Chan et al., CVPR 2022): second-order grid propagation + flow-guided deformable alignment.

[B, T, 3, h, w] in [0, 1] -> [B, T, 3, s*h, s*w] (every frame). At scale 4 the parameter names and
shapes are BasicSR's `BasicVSRPlusPlus`, so its released `{'params': ...}` files load with
strict=True (mmagic files via `convert.convert_state_dict`). Unlike BasicSR, alignment also runs on
CPU (`deform.modulated_deform_conv2d`). Scales 2 and 3 replace the two x2 pixel-shuffle stages by
one x2 / x3 stage (`upconv1` only).

Training: SPyNet is frozen for the first `spynet_fix_iter` steps and then trained with the LR
times `spynet_lr_mul`; the loop calls `param_groups(lr)` once and `set_flow_trainable(step)`
every step (a pure function of the step, so it survives resume).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from . import register
from .deform import ModulatedDeformConv2d
from .spynet import SpyNet, flow_warp
from .vsrpp import VSRPP, _mean_abs

__all__ = ["BasicVSRPlusPlus", "SecondOrderDeformableAlignment", "flow_frozen"]

BRANCHES = ("backward_1", "forward_1", "backward_2", "forward_2")
ACTIVITY_LAYERS = ("feat_extract", *BRANCHES, "output")  # mean |output| per stage when tracked


def flow_frozen(step: int, fix_iter: int) -> bool:
    """True while the optical-flow network must not train (steps 0 .. fix_iter-1)."""
    return step < fix_iter


class ResidualBlockNoBN(nn.Module):
    """x + conv(relu(conv(x))), residual convs initialised small (kaiming * 0.1) as in BasicSR."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1)
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight)
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class ConvResidualBlocks(nn.Module):
    """conv3x3 in->out, LeakyReLU(0.1), then `num_blocks` residual blocks (`main.0`, `main.2.N`)."""

    def __init__(self, in_ch: int, out_ch: int, num_blocks: int) -> None:
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True),
                                  nn.Sequential(*(ResidualBlockNoBN(out_ch) for _ in range(num_blocks))))

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


class SecondOrderDeformableAlignment(ModulatedDeformConv2d):
    """DCN whose offsets are the flows plus a bounded learnt residue, from [cond, flow_1, flow_2]."""

    def __init__(self, in_ch: int, out_ch: int, deform_groups: int = 16, max_residue_magnitude: float = 10) -> None:
        super().__init__(in_ch, out_ch, 3, padding=1, deform_groups=deform_groups)
        self.max_residue_magnitude = max_residue_magnitude
        self.conv_offset = nn.Sequential(
            nn.Conv2d(3 * out_ch + 4, out_ch, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(out_ch, 27 * deform_groups, 3, 1, 1))
        nn.init.zeros_(self.conv_offset[-1].weight)  # start as pure flow warping
        nn.init.zeros_(self.conv_offset[-1].bias)

    def forward(self, x: Tensor, cond: Tensor, flow_1: Tensor, flow_2: Tensor) -> Tensor:
        out = self.conv_offset(torch.cat([cond, flow_1, flow_2], dim=1))
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        residue = self.max_residue_magnitude * torch.tanh(torch.cat((o1, o2), dim=1))
        res_1, res_2 = torch.chunk(residue, 2, dim=1)  # per tap (dy, dx): the flows in (y, x) order
        taps = res_1.size(1) // 2
        offset = torch.cat([res_1 + flow_1.flip(1).repeat(1, taps, 1, 1),
                            res_2 + flow_2.flip(1).repeat(1, taps, 1, 1)], dim=1)
        return self.deform(x, offset, torch.sigmoid(mask))


def _is_mirror_extended(lqs: Tensor) -> bool:
    """Frame i equals frame T-1-i: forward flows are then the backward ones reversed."""
    t = lqs.size(1)
    return t % 2 == 0 and bool(torch.equal(lqs[:, : t // 2], lqs[:, t // 2:].flip(1)))


class BasicVSRPlusPlus(nn.Module):
    def __init__(
        self, mid_channels: int = 64, num_blocks: int = 7, max_residue_magnitude: float = 10, scale: int = 4,
        spynet_pretrained: str | Path | None = None, cpu_cache_length: int = 100, checkpointing: bool = False,
        hr_channels: int = 64, spynet_fix_iter: int = 5000, spynet_lr_mul: float = 0.25,
    ) -> None:
        super().__init__()
        _validate(mid_channels, num_blocks, scale, cpu_cache_length, hr_channels, spynet_lr_mul)
        self.mid_channels, self.scale, self.hr_channels = mid_channels, scale, hr_channels
        self.cpu_cache_length, self.checkpointing = cpu_cache_length, checkpointing
        self.spynet_fix_iter, self.spynet_lr_mul = spynet_fix_iter, spynet_lr_mul
        self.spynet = SpyNet(spynet_pretrained)
        self.feat_extract = ConvResidualBlocks(3, mid_channels, 5)
        self.deform_align = nn.ModuleDict()
        self.backbone = nn.ModuleDict()
        for i, name in enumerate(BRANCHES):
            self.deform_align[name] = SecondOrderDeformableAlignment(
                2 * mid_channels, mid_channels, 16, max_residue_magnitude)
            self.backbone[name] = ConvResidualBlocks((2 + i) * mid_channels, mid_channels, num_blocks)
        self.reconstruction = ConvResidualBlocks(5 * mid_channels, mid_channels, 5)
        if scale == 4:  # BasicSR's two x2 stages
            self.upconv1 = nn.Conv2d(mid_channels, mid_channels * 4, 3, 1, 1)
            self.upconv2 = nn.Conv2d(mid_channels, hr_channels * 4, 3, 1, 1)
        else:
            self.upconv1 = nn.Conv2d(mid_channels, hr_channels * scale * scale, 3, 1, 1)
        self.conv_hr = nn.Conv2d(hr_channels, hr_channels, 3, 1, 1)
        self.conv_last = nn.Conv2d(hr_channels, 3, 3, 1, 1)
        self.layer_names = list(ACTIVITY_LAYERS)
        self.track_activity = False
        self.register_buffer("_activity_sum", torch.zeros(len(self.layer_names)), persistent=False)
        self._activity_count = 0

    activity = VSRPP.activity  # same contract: model.activity(reset=True) -> {layer: mean |output|}

    # ---- training hooks -------------------------------------------------------------------------
    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer groups: everything at lr, SPyNet at lr * spynet_lr_mul (key 'lr_mult' kept)."""
        flow = list(self.spynet.parameters())
        flow_ids = {id(p) for p in flow}
        rest = [p for p in self.parameters() if id(p) not in flow_ids]
        return [{"params": rest, "lr": lr, "lr_mult": 1.0, "name": "main"},
                {"params": flow, "lr": lr * self.spynet_lr_mul, "lr_mult": self.spynet_lr_mul, "name": "spynet"}]

    def set_flow_trainable(self, step: int) -> bool:
        """Freeze/unfreeze SPyNet for this step; returns whether it trains."""
        trainable = not flow_frozen(step, self.spynet_fix_iter)
        self.spynet.requires_grad_(trainable)
        return trainable

    # ---- forward --------------------------------------------------------------------------------
    def forward(self, lqs: Tensor) -> Tensor:
        if lqs.dim() != 5 or lqs.size(2) != 3:
            raise ValueError(f"expected input [B, T, 3, h, w], got {list(lqs.shape)}")
        n, t, c, h, w = lqs.shape
        self._cache = lqs.is_cuda and t > self.cpu_cache_length
        self._device = lqs.device
        acts: list[Tensor] | None = [] if self.track_activity else None
        feats_ = self._run(self.feat_extract, lqs.reshape(-1, c, h, w)).view(n, t, -1, h, w)
        self._note(acts, [feats_])
        feats: dict[str, list[Tensor]] = {"spatial": [self._keep(feats_[:, i]) for i in range(t)]}
        del feats_
        flows_forward, flows_backward = self._compute_flow(lqs)
        for name in BRANCHES:
            flows = flows_backward if name.startswith("backward") else flows_forward
            feats[name] = self._propagate(feats, flows, name)
            self._note(acts, feats[name])
        out = self._upsample(lqs, feats)
        self._note(acts, [out])
        if acts is not None:
            self._activity_sum.add_(torch.stack(acts).to(self._activity_sum))
            self._activity_count += 1
        return out

    def _note(self, acts: list[Tensor] | None, xs: list[Tensor]) -> None:
        """mean |x| over a stage's outputs, reduced where they live (cached ones on the CPU)."""
        if acts is not None:
            acts.append(torch.stack([_mean_abs(x).to(self._device) for x in xs]).mean())

    def _run(self, module: nn.Module, *args: Tensor) -> Tensor:
        if self.checkpointing and torch.is_grad_enabled():
            return checkpoint(module, *args, use_reentrant=False)
        return module(*args)

    def _keep(self, x: Tensor) -> Tensor:
        """Where intermediate tensors live: on the CPU for long CUDA sequences."""
        return x.cpu() if self._cache else x

    def _compute_flow(self, lqs: Tensor) -> tuple[Tensor, Tensor]:
        """(forward, backward) flows [B, T-1, 2, h, w]: backward[:, i] is frame i -> i+1."""
        n, t, c, h, w = lqs.shape
        if t < 2:
            empty = lqs.new_zeros(n, 0, 2, h, w)
            return empty, empty
        prev, nxt = lqs[:, :-1].reshape(-1, c, h, w), lqs[:, 1:].reshape(-1, c, h, w)
        flow_trains = any(p.requires_grad for p in self.spynet.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and flow_trains):
            backward = self.spynet(prev, nxt).view(n, t - 1, 2, h, w)
            if _is_mirror_extended(lqs):
                forward = backward.flip(1)
            else:
                forward = self.spynet(nxt, prev).view(n, t - 1, 2, h, w)
        return self._keep(forward), self._keep(backward)

    def _propagate(self, feats: dict[str, list[Tensor]], flows: Tensor, name: str) -> list[Tensor]:
        spatial = feats["spatial"]
        t, dev = len(spatial), self._device
        backward = name.startswith("backward")
        order = range(t - 1, -1, -1) if backward else range(t)
        earlier = [k for k in feats if k not in ("spatial", name)]
        out: list[Tensor] = []
        prop = spatial[0].new_zeros(spatial[0].shape).to(dev)
        prev_flow: Tensor | None = None
        for step, idx in enumerate(order):
            current = spatial[idx].to(dev)
            if step > 0:
                flow = flows[:, idx if backward else idx - 1].to(dev)  # current frame -> previous step's
                prop_n2 = out[-2].to(dev) if step > 1 else None
                prop = self._align(name, prop, current, prop_n2, flow, prev_flow)
                prev_flow = flow
            feat = torch.cat([current, *(feats[k][idx].to(dev) for k in earlier), prop], dim=1)
            prop = prop + self._run(self.backbone[name], feat)
            out.append(self._keep(prop))
        return out[::-1] if backward else out

    def _align(self, name: str, prop: Tensor, current: Tensor, prop_n2: Tensor | None,
               flow_n1: Tensor, prev_flow: Tensor | None) -> Tensor:
        """Second-order flow-guided deformable alignment of the last two propagated features."""
        cond_n1 = flow_warp(prop, flow_n1.permute(0, 2, 3, 1))
        if prop_n2 is None or prev_flow is None:
            prop_n2, flow_n2, cond_n2 = torch.zeros_like(prop), torch.zeros_like(flow_n1), torch.zeros_like(cond_n1)
        else:  # compose: current -> previous -> the one before
            flow_n2 = flow_n1 + flow_warp(prev_flow, flow_n1.permute(0, 2, 3, 1))
            cond_n2 = flow_warp(prop_n2, flow_n2.permute(0, 2, 3, 1))
        cond = torch.cat([cond_n1, current, cond_n2], dim=1)
        return self._run(self.deform_align[name], torch.cat([prop, prop_n2], dim=1), cond, flow_n1, flow_n2)

    def _upsample(self, lqs: Tensor, feats: dict[str, list[Tensor]]) -> Tensor:
        """One frame at a time (as BasicSR): HR activations are large, this keeps them in cache."""
        dev, outs = lqs.device, []
        for i in range(lqs.size(1)):
            hr = torch.cat([feats[k][i].to(dev) for k in feats], dim=1)
            outs.append(self._keep(self._run(self._reconstruct, hr, lqs[:, i])))
        return torch.stack(outs, dim=1)

    def _reconstruct(self, feat: Tensor, lq: Tensor) -> Tensor:
        x = self.reconstruction(feat)
        if self.scale == 4:
            x = F.leaky_relu(F.pixel_shuffle(self.upconv1(x), 2), 0.1, inplace=True)
            x = F.leaky_relu(F.pixel_shuffle(self.upconv2(x), 2), 0.1, inplace=True)
        else:
            x = F.leaky_relu(F.pixel_shuffle(self.upconv1(x), self.scale), 0.1, inplace=True)
        x = self.conv_last(F.leaky_relu(self.conv_hr(x), 0.1, inplace=True))
        return x + F.interpolate(lq, scale_factor=self.scale, mode="bilinear", align_corners=False)


def _validate(mid: int, blocks: int, scale: int, cache_len: int, hr: int, lr_mul: float) -> None:
    if not isinstance(mid, int) or mid < 16 or mid % 16:
        raise ValueError(f"mid_channels must be a positive multiple of 16 (16 deformable groups), got {mid!r}")
    for key, value in (("num_blocks", blocks), ("cpu_cache_length", cache_len), ("hr_channels", hr)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    if scale not in (2, 3, 4):
        raise ValueError(f"scale must be 2, 3 or 4, got {scale!r}")
    if lr_mul < 0:
        raise ValueError(f"spynet_lr_mul must be >= 0, got {lr_mul!r}")


@register("basicvsrpp", many_to_many=True)
def build_basicvsrpp(num_frames: int | None = None, n_feats: int | None = None, n_blocks: int | None = None,
                     **kwargs) -> BasicVSRPlusPlus:
    """`num_frames` is only checked (any T >= 1 works); n_feats/n_blocks are the trainer's generic names."""
    if num_frames is not None and (not isinstance(num_frames, int) or num_frames < 1):
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    for alias, key, value in (("n_feats", "mid_channels", n_feats), ("n_blocks", "num_blocks", n_blocks)):
        if value is not None:
            if key in kwargs and kwargs[key] != value:
                raise ValueError(f"{alias}={value} contradicts {key}={kwargs[key]}")
            kwargs[key] = value
    return BasicVSRPlusPlus(**kwargs)
