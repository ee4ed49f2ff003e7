"""atheris harness: the broker ⇄ worker ZeroMQ frame decoder.

Run: python tests/fuzz/fuzz_zmq_frames.py -max_total_time=60. Any exception other than
`ProtocolError` is a crash (a worker message that could take the dispatcher down), and so
is a body that reads as its command's model but does not survive being sent again.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from whisperfarm import wire
    from whisperfarm.errors import ProtocolError
    from whisperfarm.wire_bodies import BODIES


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    frames = [
        fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 256)) for _ in range(fdp.ConsumeIntInRange(0, 7))
    ]
    try:
        _identity, rest = wire.split_envelope(frames)
        message = wire.decode(rest)
    except ProtocolError:
        return
    assert wire.decode(wire.encode(message)) == message
    model = BODIES.get(message.command)
    if model is None:
        return
    try:
        body = model.read(message)
    except ProtocolError:
        return
    assert model.read(wire.decode(wire.encode(body.message(message.job_id)))) == body


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
