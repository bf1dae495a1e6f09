"""SADP: spike-aware data pruning (our reading of arXiv 2510.04098; derivation in docs/sadp.md).

Each pruned epoch visits ``k = round((1 − r)·N)`` examples drawn with inclusion probabilities
proportional to a spike-aware upper bound on each example's gradient norm (ε-floored, water-filled),
and weights each loss by ``k/(N·π_i)`` so the gradient stays unbiased. The bound comes from the
training forward pass itself (:class:`~spikeprune.datapruning.probe.SpikeProbe`): examples whose
last-layer neurons are silent or far from threshold get small scores even when their loss is high.
"""

from __future__ import annotations

from torch import Tensor, nn

from spikeprune.datapruning.base import StepStats
from spikeprune.datapruning.probe import SpikeProbe, spike_aware_score
from spikeprune.datapruning.sampling import ImportanceSampledPruner
from spikeprune.errors import SpikepruneError


class SADP(ImportanceSampledPruner):
    """Spike-aware importance sampling. Options: ``epsilon`` (0.1), ``warmup_epochs`` (1),
    ``anneal_fraction`` (0.125), ``score_ema`` (0: keep the latest score), ``seed``."""

    probe: SpikeProbe | None = None

    def attach(self, model: nn.Module) -> None:
        if self.probe is not None:
            self.probe.remove()
        self.probe = SpikeProbe(model)

    def collect(self) -> dict[str, Tensor]:
        return self.probe.collect() if self.probe is not None else {}

    def score(self, stats: StepStats) -> Tensor:
        if "sadp_cw" not in stats.extras:
            raise SpikepruneError("SADP has no spike statistics: call pruner.attach(model) before training")
        return spike_aware_score(stats.logits, stats.targets, stats.extras)

    def epoch_metrics(self) -> dict[str, float]:
        metrics = super().epoch_metrics()
        if self.probe is not None:
            metrics["scoring_seconds"] = self.probe.seconds
            self.probe.seconds = 0.0
        return metrics
