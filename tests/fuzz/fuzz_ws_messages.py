"""atheris harness: the WebSocket text-message parser and the packet validator.

Run: python tests/fuzz/fuzz_ws_messages.py -max_total_time=60. Any exception other
than `ProtocolError` is a crash (a bug that would reach the client as `internal`).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from whisperfarm.errors import ProtocolError
    from whisperfarm.packets import PacketValidator
    from whisperfarm.protocol import Start, parse_client_message


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 4096))
    try:
        message = parse_client_message(text)
    except ProtocolError:
        return
    if isinstance(message, Start):
        validator = PacketValidator(message.audio_format())
        while fdp.remaining_bytes():
            try:
                validator.accept(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 70_000)))
            except ProtocolError:
                return


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
