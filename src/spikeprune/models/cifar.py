"""CIFAR- and CIFAR10-DVS-sized spiking networks of the SNN pruning literature, all with a ``width`` multiplier.

- ``convnet6``: the 6Conv2FC CIFAR-10 network of Grad R, STDS and UPR (from Fang et al.'s PLIF paper):
  ``{conv256 ×3, maxpool} ×2``, then FC 2048 and the classifier. The original ends in a spiking
  100-unit layer with a voting layer; ours reads out the classifier's mean over time like every
  spikeprune model, and puts tdBN after the hidden FC as after every synapse.
- ``vggsnn``: TET's CIFAR10-DVS VGGSNN, ``64, 128, AP, 256, 256, AP, 512, 512, AP, 512, 512, AP`` and a
  linear classifier on the flattened map (average pooling, as TET and UPR).
- ``vgg11``/``vgg16``: spiking VGG with max pooling and a global-average-pool classifier, so any input
  size (e.g. 48×48 event frames) works.
- ``resnet19`` follows Zheng et al. (AAAI 2021): a 128-channel stem, stages of 3/3/2 basic blocks with
  128/256/512 channels, a 256-unit spiking FC layer and the classifier. ``resnet18`` is the usual
  CIFAR ResNet-18 (64–512 channels, 2/2/2/2 blocks); ``resnet34`` the ImageNet ResNet-34 (3/4/6/3
  blocks, a 7×7 stride-2 stem and a 2×2 max pool). Blocks are spiking:
  ``LIF(BN(conv(LIF(BN(conv(x))))) + shortcut(x))``.

``width`` scales every channel count and hidden FC size (``round(c·width)``, at least 1), so one
architecture runs at the papers' size on a GPU and at a reduced size on a CPU.
"""

from __future__ import annotations

from torch import Tensor, nn

from spikeprune.errors import SpikepruneError
from spikeprune.models.base import SNNOptions, SpikingNetwork
from spikeprune.snn import PerStep

VGG_LAYOUTS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vggsnn": (64, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "convnet6": (256, 256, 256, "M", 256, 256, 256, "M"),
}
POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def scaled(channels: int, width: float) -> int:
    """A channel count under the width multiplier."""
    return max(1, round(channels * width))


def check_width(width: float) -> float:
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 64:
        raise SpikepruneError(f"width must be a number in (0, 64] (a multiplier on every channel count), got {width!r}")
    return float(width)


class SpikingVGG(SpikingNetwork):
    """A plain stack of ``conv-BN-neuron`` layers with pooling, then the head.

    ``head="gap"``: global average pool and the classifier; ``head="flatten"``: the classifier on the
    flattened last map; ``hidden``: a spiking FC layer of that size before the classifier.
    """

    def __init__(
        self,
        options: SNNOptions,
        layout: str = "vgg11",
        input_shape: tuple[int, ...] = (3, 32, 32),
        num_classes: int = 10,
        width: float = 1.0,
        pool: str = "max",
        head: str = "gap",
        hidden: int | None = None,
    ) -> None:
        super().__init__(options, input_shape, num_classes)
        width = check_width(width)
        spec = [item if item == "M" else scaled(item, width) for item in VGG_LAYOUTS[layout]]
        first = spec.pop(0)
        self.stem = nn.Sequential(
            nn.Conv2d(self.step_shape[0], first, 3, padding=1, bias=False), options.batch_norm(first, 2)
        )
        layers: list[nn.Module] = [options.neuron_module(first)]
        channels = first
        height, breadth = self.step_shape[1:]
        pending: list[nn.Module] = []
        pools = spec.count("M")
        if min(height, breadth) < 2**pools:
            raise SpikepruneError(
                f"{layout} halves its input {height}x{breadth} {pools} times; use inputs of at least "
                f"{2**pools}x{2**pools}"
            )
        for item in spec:
            if item == "M":
                pending.append(POOLS[pool](2))
                height, breadth = height // 2, breadth // 2
                continue
            block = [*pending, nn.Conv2d(channels, item, 3, padding=1, bias=False), options.batch_norm(item, 2)]
            layers += [PerStep(*block), options.neuron_module(item)]
            channels, pending = item, []
        if head == "gap":
            tail: list[nn.Module] = [*pending, nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            features = channels
        else:
            tail, features = [*pending, nn.Flatten()], channels * height * breadth
        if hidden:
            hidden = scaled(hidden, width)
            layers.append(PerStep(*tail, nn.Linear(features, hidden, bias=False), options.batch_norm(hidden, 1)))
            layers += [options.neuron_module(hidden), PerStep(nn.Linear(hidden, num_classes))]
        else:
            layers.append(PerStep(*tail, nn.Linear(features, num_classes)))
        self.body = nn.Sequential(*layers)


class SpikingBasicBlock(nn.Module):
    def __init__(self, options: SNNOptions, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            PerStep(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), options.batch_norm(c_out, 2)),
            options.neuron_module(c_out),
            PerStep(nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), options.batch_norm(c_out, 2)),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = PerStep(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), options.batch_norm(c_out, 2))
        self.neuron = options.neuron_module(c_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.neuron(self.residual(x) + self.shortcut(x))


class SpikingResNet(SpikingNetwork):
    def __init__(
        self,
        options: SNNOptions,
        widths: tuple[int, ...],
        blocks: tuple[int, ...],
        stem_width: int,
        fc_hidden: int | None,
        input_shape: tuple[int, ...] = (3, 32, 32),
        num_classes: int = 10,
        width: float = 1.0,
        imagenet_stem: bool = False,
    ) -> None:
        super().__init__(options, input_shape, num_classes)
        width = check_width(width)
        widths = tuple(scaled(w, width) for w in widths)
        stem_width = scaled(stem_width, width)
        fc_hidden = scaled(fc_hidden, width) if fc_hidden else None
        # CIFAR stem: 3x3 conv. ImageNet stem: 7x7 conv with stride 2, then a 2x2 max pool over the spikes
        # (torchvision's 3x3 pool with padding has no exact NIR form; both halve the map)
        kernel, stride = (7, 2) if imagenet_stem else (3, 1)
        self.stem = nn.Sequential(
            nn.Conv2d(self.step_shape[0], stem_width, kernel, stride=stride, padding=kernel // 2, bias=False),
            options.batch_norm(stem_width, 2),
        )
        layers: list[nn.Module] = [options.neuron_module(stem_width)]
        if imagenet_stem:
            layers.append(PerStep(nn.MaxPool2d(2)))
        channels = stem_width
        for stage, (stage_width, count) in enumerate(zip(widths, blocks, strict=True)):
            for index in range(count):
                stride = 2 if (stage > 0 and index == 0) else 1
                layers.append(SpikingBasicBlock(options, channels, stage_width, stride))
                channels = stage_width
        head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if fc_hidden:
            layers.append(PerStep(*head, nn.Linear(channels, fc_hidden, bias=False), options.batch_norm(fc_hidden, 1)))
            layers += [options.neuron_module(fc_hidden), PerStep(nn.Linear(fc_hidden, num_classes))]
        else:
            layers.append(PerStep(*head, nn.Linear(channels, num_classes)))
        self.body = nn.Sequential(*layers)
