"""Surrogate gradients: the spike is a step function forward, a smooth bump backward.

Each surrogate is a module with a sharpness ``alpha`` that is a buffer (fixed or annealed by the
trainer) or a parameter (learned). Learning ``alpha`` works because the spike is written as a
straight-through estimator ``Θ(x) + σ_α(x) − stop_grad(σ_α(x))``: the forward value is the step,
and ``∂/∂α`` of the smooth primitive ``σ_α`` carries a gradient to the sharpness.

Formulas (``x = u − θ``):

* ``atan``:     ``σ'(x) = α/2 / (1 + (π/2·α·x)²)``        (SpikingJelly ``ATan``, default α=2)
* ``sigmoid``:  ``σ'(x) = α·sig(αx)·(1 − sig(αx))``        (SpikingJelly ``Sigmoid``, default α=4)
* ``triangle``: ``σ'(x) = α·max(0, 1 − α|x|)``             (peak α, support |x| < 1/α, area 1)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spikeprune.errors import SpikepruneError


class Surrogate(nn.Module):
    """Base class: subclasses give the derivative, the primitive and the primitive's α-sensitivity."""

    default_alpha: float = 1.0

    def __init__(self, alpha: float | None = None, learnable: bool = False) -> None:
        super().__init__()
        value = torch.tensor(float(self.default_alpha if alpha is None else alpha))
        if value <= 0:
            raise SpikepruneError(f"surrogate sharpness alpha must be > 0, got {float(value)}")
        if learnable:
            self.alpha = nn.Parameter(value)
        else:
            self.register_buffer("alpha", value)

    @property
    def learnable(self) -> bool:
        return isinstance(self.alpha, nn.Parameter)

    def set_alpha(self, value: float) -> None:
        """Set the sharpness in place (annealing); keeps it a parameter if it is learned."""
        with torch.no_grad():
            self.alpha.fill_(float(value))

    def derivative(self, x: Tensor, alpha: float | None = None) -> Tensor:
        """σ'(x): the gradient of a spike with respect to the membrane, at distance x from threshold.

        ``alpha`` may be passed as a Python float by callers that loop (saves a device sync per call).
        """
        raise NotImplementedError

    def primitive(self, x: Tensor, alpha: Tensor) -> Tensor:
        """σ_α(x): a smooth step whose derivative is :meth:`derivative`."""
        raise NotImplementedError

    def alpha_derivative(self, x: Tensor) -> Tensor:
        """∂σ_α(x)/∂α, used by the fused neurons when α is learned."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Heaviside forward with this surrogate's gradient (for x and, if learned, for α)."""
        step = (x >= 0).to(x.dtype)
        if not torch.is_grad_enabled():
            return step
        smooth = self.primitive(x, self.alpha)
        return step + (smooth - smooth.detach())

    def extra_repr(self) -> str:
        return f"alpha={float(self.alpha):g}, learnable={self.learnable}"


class ATan(Surrogate):
    default_alpha = 2.0

    def derivative(self, x: Tensor, alpha: float | None = None) -> Tensor:
        a = float(self.alpha) if alpha is None else alpha
        # 1 + (π/2·α·x)² in one kernel, then invert and scale in place
        one = torch.ones((), dtype=x.dtype, device=x.device)
        return torch.addcmul(one, x, x, value=(math.pi / 2 * a) ** 2).reciprocal_().mul_(a / 2)

    def primitive(self, x: Tensor, alpha: Tensor) -> Tensor:
        return torch.atan(math.pi / 2 * alpha * x) / math.pi + 0.5

    def alpha_derivative(self, x: Tensor) -> Tensor:
        a = self.alpha.to(x.dtype)
        return (x / 2) / (1 + (math.pi / 2 * a * x).square())


class Sigmoid(Surrogate):
    default_alpha = 4.0

    def derivative(self, x: Tensor, alpha: float | None = None) -> Tensor:
        a = float(self.alpha) if alpha is None else alpha
        s = torch.sigmoid(x * a)
        return torch.addcmul(s, s, s, value=-1.0).mul_(a)

    def primitive(self, x: Tensor, alpha: Tensor) -> Tensor:
        return torch.sigmoid(alpha * x)

    def alpha_derivative(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(self.alpha.to(x.dtype) * x)
        return x * s * (1 - s)


class Triangle(Surrogate):
    default_alpha = 1.0

    def derivative(self, x: Tensor, alpha: float | None = None) -> Tensor:
        a = float(self.alpha) if alpha is None else alpha
        return torch.abs(x).mul_(-a * a).add_(a).clamp_(min=0)

    def primitive(self, x: Tensor, alpha: Tensor) -> Tensor:
        ax = torch.clamp(alpha * x, -1, 1)
        return 0.5 + ax - torch.sign(ax) * ax.square() / 2

    def alpha_derivative(self, x: Tensor) -> Tensor:
        a = self.alpha.to(x.dtype)
        return x * torch.clamp(1 - a * x.abs(), min=0)


SURROGATES: dict[str, type[Surrogate]] = {"atan": ATan, "sigmoid": Sigmoid, "triangle": Triangle}


def build_surrogate(name: str, alpha: float | None = None, learnable: bool = False) -> Surrogate:
    """Make a surrogate by name (``atan``, ``sigmoid``, ``triangle``)."""
    try:
        cls = SURROGATES[name.lower()]
    except KeyError:
        raise SpikepruneError(f"unknown surrogate {name!r}; choose one of {', '.join(SURROGATES)}") from None
    return cls(alpha, learnable=learnable)


def set_surrogate_alpha(model: nn.Module, value: float) -> int:
    """Set the sharpness of every surrogate in ``model`` (annealing); returns how many were set."""
    found = [m for m in model.modules() if isinstance(m, Surrogate)]
    for surrogate in found:
        surrogate.set_alpha(value)
    return len(found)
