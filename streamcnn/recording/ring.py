"""`PacketRing`: the last seconds of encoded video, for clips that start before their trigger."""

from __future__ import annotations

from collections import deque

from .encoder import av


class PacketRing:
    """Encoded packets of the last ``seconds`` (plus the rest of the GOP they start in), in order.

    Only compressed packets are kept, so the memory is the stream's bitrate × the duration: 10 s of
    1080p25 H.264 from libx264 ``veryfast`` CRF 23 is about 3–8 MB (tools/bench_recording.py
    measures it), against 1.5 GB for the same frames raw. ``max_bytes`` caps it whatever the
    bitrate (the oldest GOPs go first).

    Args:
        seconds: how far back the ring reaches (``pre_roll``).
        time_base: seconds per pts tick of the packets.
        max_bytes: hard cap on the packet bytes held.

    Attributes:
        bytes: packet bytes held now.
    """

    def __init__(self, seconds: float, time_base, max_bytes: int = 256 * 2**20) -> None:
        self.span = int(round(seconds / time_base))
        self.max_bytes = max_bytes
        self.packets: deque[av.Packet] = deque()
        self.bytes = 0

    def push(self, packet: av.Packet) -> None:
        """Add the encoder's next packet; drop whole GOPs that end before ``seconds`` ago."""
        self.packets.append(packet)
        self.bytes += packet.size
        newest = packet.pts
        while True:
            second_key = next((i for i, p in enumerate(self.packets) if i and p.is_keyframe), None)
            if second_key is None:
                break
            # keep the oldest GOP while the next keyframe is still later than `span` ago
            if self.packets[second_key].pts > newest - self.span and self.bytes <= self.max_bytes:
                break
            for _ in range(second_key):
                self.bytes -= self.packets.popleft().size

    def since(self, pts: int) -> list[av.Packet]:
        """The packets needed to show every frame from ``pts`` on: from the last keyframe at or
        before it (or the oldest held) to the newest."""
        start = 0
        for i, p in enumerate(self.packets):
            if p.is_keyframe and p.pts <= pts:
                start = i
        return list(self.packets)[start:]

    def clear(self) -> None:
        self.packets.clear()
        self.bytes = 0
