"""CIFAR-sized spiking VGG and ResNet (tdBN), as used by the SNN pruning literature.

``resnet19`` follows Zheng et al. (AAAI 2021): a 128-channel stem, stages of 3/3/2 basic blocks with
128/256/512 channels, a 256-unit spiking FC layer and the classifier. ``resnet18`` is the usual
CIFAR ResNet-18 (64–512 channels, 2/2/2/2 blocks). Blocks are spiking:
``LIF(BN(conv(LIF(BN(conv(x))))) + shortcut(x))``.
VGG ends with a global average pool, so any input size (e.g. 48×48 event frames) works.
"""

from __future__ import annotations

from torch import Tensor, nn

from spikeprune.models.base import SNNOptions, SpikingNetwork
from spikeprune.snn import PerStep

VGG_LAYOUTS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


class SpikingVGG(SpikingNetwork):
    def __init__(
        self,
        options: SNNOptions,
        layout: str = "vgg11",
        input_shape: tuple[int, ...] = (3, 32, 32),
        num_classes: int = 10,
    ) -> None:
        super().__init__(options, input_shape, num_classes)
        spec = list(VGG_LAYOUTS[layout])
        first = spec.pop(0)
        self.stem = nn.Sequential(
            nn.Conv2d(self.step_shape[0], first, 3, padding=1, bias=False), options.batch_norm(first, 2)
        )
        layers: list[nn.Module] = [options.neuron_module(first)]
        channels = first
        pending_pool = False
        for item in spec:
            if item == "M":
                pending_pool = True
                continue
            block = ([nn.MaxPool2d(2)] if pending_pool else []) + [
                nn.Conv2d(channels, item, 3, padding=1, bias=False),
                options.batch_norm(item, 2),
            ]
            layers += [PerStep(*block), options.neuron_module(item)]
            channels, pending_pool = item, False
        layers.append(PerStep(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)))
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
    ) -> None:
        super().__init__(options, input_shape, num_classes)
        self.stem = nn.Sequential(
            nn.Conv2d(self.step_shape[0], stem_width, 3, padding=1, bias=False), options.batch_norm(stem_width, 2)
        )
        layers: list[nn.Module] = [options.neuron_module(stem_width)]
        channels = stem_width
        for stage, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            for index in range(count):
                stride = 2 if (stage > 0 and index == 0) else 1
                layers.append(SpikingBasicBlock(options, channels, width, stride))
                channels = width
        head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if fc_hidden:
            layers.append(PerStep(*head, nn.Linear(channels, fc_hidden, bias=False), options.batch_norm(fc_hidden, 1)))
            layers += [options.neuron_module(fc_hidden), PerStep(nn.Linear(fc_hidden, num_classes))]
        else:
            layers.append(PerStep(*head, nn.Linear(channels, num_classes)))
        self.body = nn.Sequential(*layers)
