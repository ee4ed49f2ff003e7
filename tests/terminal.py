"""A terminal for the source CLI's display tests: what it shows after the CLI wrote to it."""

from __future__ import annotations

import io
import re

CONTROL = re.compile(r"\x1b\[A|\x1b\[K|\x1b\[[0-9;]*m|\r|\n|[^\x1b\r\n]+")
"""What the CLI writes: tqdm's cursor-up, erase to the end of the line, colours, CR, LF, text."""


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def screen(written: str) -> list[str]:
    """The lines a terminal shows after `written` (colours dropped, trailing blanks too)."""
    lines, row, col = [""], 0, 0
    for token in CONTROL.findall(written):
        if token == "\x1b[A":
            row = max(row - 1, 0)
        elif token == "\x1b[K":
            lines[row] = lines[row][:col]
        elif token.startswith("\x1b"):
            continue
        elif token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            lines += [""] * (row + 1 - len(lines))
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + len(token) :]
            col += len(token)
    return [line.rstrip() for line in lines]
