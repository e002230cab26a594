"""MONAI networks for the segmentation config: 2D UNet on slices, 3D SegResNet on patches."""

from __future__ import annotations

import torch
from monai.networks.nets import SegResNet, UNet

from radsurv.segmentation.config import SegmentationConfig


def build_network(config: SegmentationConfig) -> torch.nn.Module:
    """The network a config describes (weights freshly initialised).

    Examples
    --------
    >>> net = build_network(SegmentationConfig.default("2d", ["flair", "t1gd"]))
    >>> net(torch.zeros(1, 2, 64, 64)).shape
    torch.Size([1, 3, 64, 64])
    """
    config.validate()
    if config.dim == "2d":
        return UNet(
            spatial_dims=2,
            in_channels=config.in_channels,
            out_channels=config.out_channels,
            channels=tuple(config.channels),
            strides=tuple(config.strides),
            num_res_units=config.num_res_units,
            norm="instance",
            dropout=config.dropout,
        )
    # SegResNet down-samples len(blocks_down) - 1 times; keep that equal to len(strides).
    blocks_down = (1, 2, 2, 4, 4, 4)[: len(config.strides) + 1]
    return SegResNet(
        spatial_dims=3,
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        init_filters=config.channels[0],
        blocks_down=blocks_down,
        blocks_up=(1,) * (len(blocks_down) - 1),
        dropout_prob=config.dropout or None,
    )
