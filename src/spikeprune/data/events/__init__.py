"""Event-camera data: streams, frame integration, a frame cache, a DVS emulator and the event datasets.

- ``stream``: the ``(x, y, t, p)`` structured dtype (tonic's) and validation.
- ``frames``: events to frames ``[T, 2, H, W]`` by time or by event count, with optional denoising
  and downsampling (tonic's transforms).
- ``cache``: frames on disk, keyed by dataset, files and transform parameters, written atomically.
- ``emulator``: N-MNIST-style saccades over static images.
- ``readers``: N-MNIST ``.bin``, AEDAT 2.0 / AEDAT4 (CIFAR10-DVS), DVS Gesture ``.npy``.
- ``datasets``: ``nmnist5k``, ``nmnist``, ``dvsgesture``, ``cifar10dvs`` in the dataset registry.
"""

from spikeprune.data.events.emulator import SaccadeEmulator
from spikeprune.data.events.frames import FrameSpec, frame_spec
from spikeprune.data.events.stream import EVENT_DTYPE, EventFileError, as_events, check_events, make_events

__all__ = [
    "EVENT_DTYPE",
    "EventFileError",
    "FrameSpec",
    "SaccadeEmulator",
    "as_events",
    "check_events",
    "frame_spec",
    "make_events",
]
