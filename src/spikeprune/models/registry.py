"""Model registry: ``build_model(name, input_shape=..., num_classes=..., **options)``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from spikeprune.errors import SpikepruneError
from spikeprune.models.base import SNNOptions, SpikingNetwork
from spikeprune.models.cifar import SpikingResNet, SpikingVGG
from spikeprune.models.convnets import MLP, SCNN, SCNN1d


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    default_input_shape: tuple[int, ...]
    build: Callable[..., SpikingNetwork]


_MODELS: dict[str, ModelInfo] = {}


def _register(name: str, description: str, default_input_shape: tuple[int, ...]):
    def wrap(build: Callable[..., SpikingNetwork]) -> Callable[..., SpikingNetwork]:
        _MODELS[name] = ModelInfo(name, description, default_input_shape, build)
        return build

    return wrap


@_register("scnn", "2 conv + 2 FC spiking CNN, default for 28x28 inputs", (1, 28, 28))
def _scnn(options: SNNOptions, input_shape, num_classes, **extra):
    return SCNN(options, input_shape, num_classes, **extra)


@_register("scnn1d", "3 conv1d + 2 FC spiking CNN for MNIST-1D", (1, 40))
def _scnn1d(options: SNNOptions, input_shape, num_classes, **extra):
    return SCNN1d(options, input_shape, num_classes, **extra)


@_register("mlp", "fully connected SNN (hidden=(256, 256))", (1, 28, 28))
def _mlp(options: SNNOptions, input_shape, num_classes, **extra):
    return MLP(options, input_shape, num_classes, **extra)


@_register("convnet6", "6Conv2FC CIFAR net of Grad R/STDS/UPR (6 conv of 256, FC 2048; `width` scales)", (3, 32, 32))
def _convnet6(options: SNNOptions, input_shape, num_classes, width: float = 1.0):
    return SpikingVGG(options, "convnet6", input_shape, num_classes, width, pool="max", head="flatten", hidden=2048)


@_register("vggsnn", "CIFAR10-DVS VGGSNN of TET/UPR (64-128-256-256-512-512-512-512, avg pool; `width`)", (2, 48, 48))
def _vggsnn(options: SNNOptions, input_shape, num_classes, width: float = 1.0):
    return SpikingVGG(options, "vggsnn", input_shape, num_classes, width, pool="avg", head="flatten")


@_register("vgg11", "spiking VGG-11 with tdBN (CIFAR-sized, any input size; `width`)", (3, 32, 32))
def _vgg11(options: SNNOptions, input_shape, num_classes, width: float = 1.0):
    return SpikingVGG(options, "vgg11", input_shape, num_classes, width)


@_register("vgg16", "spiking VGG-16 with tdBN (CIFAR-sized, any input size; `width`)", (3, 32, 32))
def _vgg16(options: SNNOptions, input_shape, num_classes, width: float = 1.0):
    return SpikingVGG(options, "vgg16", input_shape, num_classes, width)


@_register("resnet19", "spiking ResNet-19 (Zheng et al. 2021, tdBN; `width`)", (3, 32, 32))
def _resnet19(options: SNNOptions, input_shape, num_classes, width: float = 1.0):
    return SpikingResNet(options, (128, 256, 512), (3, 3, 2), 128, 256, input_shape, num_classes, width)


@_register("resnet18", "spiking ResNet-18 (CIFAR stem; `width`)", (3, 32, 32))
def _resnet18(options: SNNOptions, input_shape, num_classes, width: float = 1.0):
    return SpikingResNet(options, (64, 128, 256, 512), (2, 2, 2, 2), 64, None, input_shape, num_classes, width)


@_register(
    "resnet34", "spiking ResNet-34 (ImageNet stem: 7x7/2 conv, 2x2 max pool; 3/4/6/3 blocks; `width`)", (3, 224, 224)
)
def _resnet34(options: SNNOptions, input_shape, num_classes, width: float = 1.0):
    return SpikingResNet(
        options, (64, 128, 256, 512), (3, 4, 6, 3), 64, None, input_shape, num_classes, width, imagenet_stem=True
    )


def list_models() -> list[ModelInfo]:
    return list(_MODELS.values())


def build_model(
    name: str,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int = 10,
    **options,
) -> SpikingNetwork:
    """Build a registered model. ``options`` are :class:`SNNOptions` fields plus model-specific extras."""
    try:
        info = _MODELS[name.lower()]
    except KeyError:
        raise SpikepruneError(f"unknown model {name!r}; choose one of {', '.join(_MODELS)}") from None
    fields = {f.name for f in dataclasses.fields(SNNOptions)}
    snn = SNNOptions(**{k: v for k, v in options.items() if k in fields})
    extra = {k: v for k, v in options.items() if k not in fields}
    shape = tuple(input_shape) if input_shape is not None else info.default_input_shape
    try:
        return info.build(snn, shape, num_classes, **extra)
    except TypeError as error:
        raise SpikepruneError(f"model {name!r} does not take option(s) {sorted(extra)}: {error}") from None
    except (RuntimeError, ValueError) as error:  # e.g. a negative or zero layer size from the options
        first = str(error).splitlines()[0]
        raise SpikepruneError(
            f"model {name!r} cannot be built with input {shape} and options {extra or '{}'}: {first}; check the "
            "model_options"
        ) from None
