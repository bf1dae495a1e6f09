"""A minimal AEDAT4 writer, for the tests only: one uncompressed DVS event stream, as the ``aedat`` package reads it.

Layout (little-endian throughout):

- the magic line ``#!AER-DAT4.0\\r\\n``;
- a u32 length, then an ``IOHeader`` flatbuffer (file identifier ``IOHE``): ``compression`` (int32, 0 = none),
  ``dataTablePosition`` (int64, -1 = no data table at the end) and ``infoNode``, an XML description whose
  ``outInfo`` node lists the streams: here one, named ``0``, with ``typeIdentifier`` ``EVTS`` and an ``info``
  node giving ``sizeX`` and ``sizeY``;
- packets, each a u32 stream id, a u32 byte count and that many bytes: a size-prefixed ``EventPacket``
  flatbuffer (file identifier ``EVTS``) whose only field, ``elements``, is a vector of 16-byte ``Event`` structs
  ``{t: int64, x: int16, y: int16, on: bool, 3 bytes of padding}``.

With no data table the reader stops at the end of the file, so a file cut exactly between two packets reads
as a shorter recording; a cut inside a packet is an error.
"""

from __future__ import annotations

import struct
from pathlib import Path

import flatbuffers
import numpy as np

MAGIC = b"#!AER-DAT4.0\r\n"
COMPRESSION_NONE = 0
NO_DATA_TABLE = -1
EVENT_STRUCT_BYTES = 16  # int64 t, int16 x, int16 y, bool on, padded to the 8-byte alignment of t


def description(width: int, height: int, stream_id: int = 0) -> str:
    """The header's XML: one event stream ``stream_id`` of a ``width`` x ``height`` sensor."""
    out = f"/mainloop/Recorder/outInfo/{stream_id}/"
    return (
        '<dv version="2.0">'
        '<node name="outInfo" path="/mainloop/Recorder/outInfo/">'
        f'<node name="{stream_id}" path="{out}">'
        '<attr key="compression" type="string">NONE</attr>'
        '<attr key="originalModuleName" type="string">capture</attr>'
        '<attr key="originalOutputName" type="string">events</attr>'
        '<attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>'
        '<attr key="typeIdentifier" type="string">EVTS</attr>'
        f'<node name="info" path="{out}info/">'
        f'<attr key="sizeX" type="int">{width}</attr>'
        f'<attr key="sizeY" type="int">{height}</attr>'
        '<attr key="source" type="string">DVS128</attr>'
        "</node></node></node></dv>"
    )


def io_header(width: int, height: int, stream_id: int = 0) -> bytes:
    """The ``IOHeader`` table: compression (slot 0), dataTablePosition (slot 1), infoNode (slot 2)."""
    builder = flatbuffers.Builder(1024)
    builder.ForceDefaults(True)  # write both fields even though they hold the schema's defaults
    info = builder.CreateString(description(width, height, stream_id))
    builder.StartObject(3)
    builder.PrependInt32Slot(0, COMPRESSION_NONE, 0)
    builder.PrependInt64Slot(1, NO_DATA_TABLE, -1)
    builder.PrependUOffsetTRelativeSlot(2, info, 0)
    builder.Finish(builder.EndObject(), file_identifier=b"IOHE")
    return bytes(builder.Output())


def event_packet(events: np.ndarray) -> bytes:
    """A size-prefixed ``EventPacket`` holding ``events`` (fields x, y, t, p) in the order given."""
    builder = flatbuffers.Builder(EVENT_STRUCT_BYTES * len(events) + 64)
    builder.StartVector(EVENT_STRUCT_BYTES, len(events), 8)
    for event in events[::-1]:  # a flatbuffer is built back to front
        builder.Prep(8, EVENT_STRUCT_BYTES)
        builder.Pad(3)
        builder.PrependBool(bool(event["p"]))
        builder.PrependInt16(int(event["y"]))
        builder.PrependInt16(int(event["x"]))
        builder.PrependInt64(int(event["t"]))
    elements = builder.EndVector()
    builder.StartObject(1)
    builder.PrependUOffsetTRelativeSlot(0, elements, 0)
    builder.FinishSizePrefixed(builder.EndObject(), file_identifier=b"EVTS")
    return bytes(builder.Output())


def write_aedat4(
    path: Path, events: np.ndarray, sensor_size: tuple[int, int] = (128, 128), events_per_packet: int = 100
) -> None:
    """Write ``events`` (fields x, y, t, p) to ``path`` as one AEDAT4 event stream, in packets."""
    header = io_header(*sensor_size)
    chunks = [MAGIC, struct.pack("<I", len(header)), header]
    for start in range(0, len(events), events_per_packet):
        packet = event_packet(events[start : start + events_per_packet])
        chunks.append(struct.pack("<II", 0, len(packet)))
        chunks.append(packet)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(chunks))
