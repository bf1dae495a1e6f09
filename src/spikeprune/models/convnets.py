"""Small convolutional SNNs for the embedded data sets: ``scnn`` (28×28) and ``scnn1d`` (MNIST-1D)."""

from __future__ import annotations

from torch import nn

from spikeprune.models.base import SNNOptions, SpikingNetwork
from spikeprune.snn import PerStep


class SCNN(SpikingNetwork):
    """conv(32)-pool-conv(64)-pool-fc(hidden)-fc(classes); the default for 28×28 digits."""

    def __init__(
        self,
        options: SNNOptions,
        input_shape: tuple[int, ...] = (1, 28, 28),
        num_classes: int = 10,
        channels: tuple[int, int] = (32, 64),
        hidden: int = 128,
    ) -> None:
        super().__init__(options, input_shape, num_classes)
        c_in, height, width = self.step_shape
        c1, c2 = channels
        self.stem = nn.Sequential(nn.Conv2d(c_in, c1, 3, padding=1, bias=False), options.batch_norm(c1, 2))
        flat = c2 * (height // 4) * (width // 4)
        self.body = nn.Sequential(
            options.neuron_module(c1),
            PerStep(nn.MaxPool2d(2), nn.Conv2d(c1, c2, 3, padding=1, bias=False), options.batch_norm(c2, 2)),
            options.neuron_module(c2),
            PerStep(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(flat, hidden, bias=False), options.batch_norm(hidden, 1)),
            options.neuron_module(hidden),
            PerStep(nn.Linear(hidden, num_classes)),
        )


class SCNN1d(SpikingNetwork):
    """Three 1-D conv blocks and two linear layers for MNIST-1D sequences ``(1, 40)``."""

    def __init__(
        self,
        options: SNNOptions,
        input_shape: tuple[int, ...] = (1, 40),
        num_classes: int = 10,
        channels: int = 64,
        hidden: int = 128,
    ) -> None:
        super().__init__(options, input_shape, num_classes)
        c_in, length = self.step_shape
        self.stem = nn.Sequential(nn.Conv1d(c_in, channels, 5, padding=2, bias=False), options.batch_norm(channels, 1))
        flat = channels * (((length + 1) // 2 + 1) // 2)
        self.body = nn.Sequential(
            options.neuron_module(channels),
            PerStep(nn.Conv1d(channels, channels, 3, stride=2, padding=1, bias=False), options.batch_norm(channels, 1)),
            options.neuron_module(channels),
            PerStep(nn.Conv1d(channels, channels, 3, stride=2, padding=1, bias=False), options.batch_norm(channels, 1)),
            options.neuron_module(channels),
            PerStep(nn.Flatten(), nn.Linear(flat, hidden, bias=False), options.batch_norm(hidden, 1)),
            options.neuron_module(hidden),
            PerStep(nn.Linear(hidden, num_classes)),
        )


class MLP(SpikingNetwork):
    """Fully connected SNN on flattened input; ``hidden`` lists the layer widths."""

    def __init__(
        self,
        options: SNNOptions,
        input_shape: tuple[int, ...] = (1, 28, 28),
        num_classes: int = 10,
        hidden: tuple[int, ...] = (256, 256),
    ) -> None:
        super().__init__(options, input_shape, num_classes)
        features = 1
        for size in self.step_shape:
            features *= size
        self.stem = nn.Sequential(
            nn.Flatten(), nn.Linear(features, hidden[0], bias=False), options.batch_norm(hidden[0], 1)
        )
        layers: list[nn.Module] = [options.neuron_module(hidden[0])]
        for width_in, width_out in zip(hidden, hidden[1:], strict=False):
            layers += [PerStep(nn.Linear(width_in, width_out, bias=False), options.batch_norm(width_out, 1))]
            layers += [options.neuron_module(width_out)]
        layers.append(PerStep(nn.Linear(hidden[-1], num_classes)))
        self.body = nn.Sequential(*layers)
