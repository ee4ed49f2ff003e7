"""The null engine: no model, a marker text, a configurable fake inference time.

It exists for load tests of the broker and the protocol: it behaves like a real engine
(blocking, time proportional to audio, one segment per request) without needing a model
or a CPU to burn. It is never the default.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from workers.engines import DecodedSegment, DecodeRequest, DecodeResult
from workers.settings import WorkerSettings


@dataclass
class NullEngine:
    delay_per_second: float = 0.0
    name: str = "null"
    model: str = "none"
    device: str = "cpu"
    wants_vad: bool = False
    """Files are decoded whole, `start.vad` or not (`Engine.wants_vad`)."""

    def transcribe(self, requests: list[DecodeRequest]) -> list[DecodeResult]:
        return [self._one(r) for r in requests]

    def _one(self, request: DecodeRequest) -> DecodeResult:
        seconds = request.seconds
        if self.delay_per_second:
            time.sleep(seconds * self.delay_per_second)
        if not seconds:
            return DecodeResult([], request.language)
        text = f"[null engine] {seconds:.1f} s of audio"
        return DecodeResult([DecodedSegment(0.0, round(seconds, 3), text)], request.language)


def load(settings: WorkerSettings) -> NullEngine:
    return NullEngine(delay_per_second=settings.null_delay_per_second)
