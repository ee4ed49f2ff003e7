"""`python -m whisperfarm.streaming.pcm_pipe FILE`: a file's audio as PCM on stdout.

For a server that takes whole files (the broker's OpenAI edge) and must decode them off
its event loop: FFmpeg's decoders hold the interpreter for long stretches, so they run
in a child process that streams what it decodes, never the whole file in memory.

stdout: one line of JSON — the native format `{"sample_rate", "channels", "duration"}`,
or `{"error": reason}` for a file that cannot be read (exit 2) — then the audio as
interleaved s16le in 1000-frame packets (the last one shorter) until the file ends. A
failure mid-file writes its reason to stderr and exits 3.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from whisperfarm.streaming.decode import iter_packets, open_audio
from whisperfarm.streaming.errors import UnreadableInput

EXIT_UNREADABLE = 2
EXIT_FAILED_MID_FILE = 3


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m whisperfarm.streaming.pcm_pipe FILE", file=sys.stderr)
        return EXIT_UNREADABLE
    out = sys.stdout.buffer
    path = Path(args[0])
    try:
        info = open_audio(path)
    except UnreadableInput as exc:
        out.write(json.dumps({"error": exc.message}).encode() + b"\n")
        return EXIT_UNREADABLE
    header = {"sample_rate": info.sample_rate, "channels": info.channels}
    out.write(json.dumps({**header, "duration": info.duration}).encode() + b"\n")
    try:
        for packet in iter_packets(path, info):
            out.write(packet)
    except UnreadableInput as exc:
        print(exc.message, file=sys.stderr)
        return EXIT_FAILED_MID_FILE
    except BrokenPipeError:  # the server stopped reading: the request is over
        return 0
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
