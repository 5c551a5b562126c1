"""timm model variants rsb-tune registers: ResNets with a CIFAR-style stem.

timm's ResNet stem (a 7x7 stride-2 convolution and a stride-2 max-pool) divides a 32 px image
by 4 before the first stage, leaving 8x8 maps in stage 1 and 1x1 after stage 4. CIFAR ResNets
(He et al. 2016 section 4.2; the ResNet-18 of most CIFAR studies) use one 3x3 stride-1
convolution and no pool, so stage 1 sees 32x32. timm's ResNet has no option for that stem, so
the variants below are timm's own ``ResNet`` (same blocks, same ``drop_path_rate``, same
``create_model`` keyword arguments) with ``conv1`` replaced and ``maxpool`` an identity.

Importing this module registers them in timm's model registry (``timm.create_model(
"resnet18_cifar")``); :func:`register` does it idempotently and is what callers use.
"""

from __future__ import annotations

__all__ = ["CIFAR_RESNETS", "register"]

# name -> (block, layers), as timm's resnet18/34/50
CIFAR_RESNETS = {
    "resnet18_cifar": ("BasicBlock", (2, 2, 2, 2)),
    "resnet34_cifar": ("BasicBlock", (3, 4, 6, 3)),
    "resnet50_cifar": ("Bottleneck", (3, 4, 6, 3)),
}


def _cifar_resnet(block_name: str, layers, **kwargs):
    import torch.nn as nn
    from timm.models import resnet

    for unused in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(unused, None)
    if kwargs.pop("pretrained", False):
        raise ValueError("the CIFAR-stem ResNets have no pretrained weights")
    in_chans = kwargs.get("in_chans", 3)
    model = resnet.ResNet(block=getattr(resnet, block_name), layers=layers, **kwargs)
    width = model.bn1.num_features  # what the stem hands to stage 1
    model.conv1 = nn.Conv2d(in_chans, width, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    model.feature_info[0]["reduction"] = 1
    model.pretrained_cfg = {"architecture": "cifar-stem resnet", "input_size": (3, 32, 32), "num_classes": model.num_classes}
    return model


def register() -> None:
    """Register the CIFAR-stem ResNets in timm (once per process; safe to call again)."""
    import timm
    from timm.models import register_model

    for name, (block, layers) in CIFAR_RESNETS.items():
        if timm.is_model(name):
            continue

        def entry(pretrained: bool = False, *, _block=block, _layers=layers, **kwargs):
            return _cifar_resnet(_block, _layers, pretrained=pretrained, **kwargs)

        entry.__name__ = name
        entry.__module__ = __name__
        entry.__doc__ = f"timm ResNet ({block}, layers {list(layers)}) with a CIFAR stem: 3x3 stride-1 conv, no max-pool."
        register_model(entry)


register()
