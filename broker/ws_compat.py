"""The uvicorn and websockets releases `broker.ws_protocol` extends, and where each keeps
the private state it reads.

`PacketProtocol` subclasses uvicorn's sans-I/O WebSocket protocol and reads its message
state (`frames`, `curr_msg_data_type`: uvicorn 0.50 and later) and the state of the
websockets `ServerProtocol` it drives. Those are private and move between releases:
websockets keeps its size limit in `max_size` and the size of a fragmented message
under way in `cur_size` up to 15, in `max_message_size` (plus an optional
`max_fragment_size`) and `current_size` from 16 on. This module is the one place that
knows which; the rest of the broker asks it.

`SUPPORTED` is the range the tests run (the lowest and the newest websockets, see
`tests/test_ws_versions.py`) and the bounds `pyproject.toml` declares. It includes
websockets 15, the newest the OpenAI SDK's realtime extra accepts, so the SDK can be
installed beside the broker. A broker that finds another version refuses to start with
one line (`unsupported_versions`) instead of failing every handshake.
"""

from __future__ import annotations

from operator import attrgetter

import uvicorn
from packaging.specifiers import SpecifierSet
from websockets.server import ServerProtocol
from websockets.version import version as websockets_version

SUPPORTED = {"uvicorn": ">=0.50,<0.56", "websockets": ">=13,<18"}
"""Library → the versions `broker.ws_protocol` is tested with (as in `pyproject.toml`)."""


def installed_versions() -> dict[str, str]:
    """Library → the version imported (which, with several installs, is the first on
    `sys.path`)."""
    return {"uvicorn": uvicorn.__version__, "websockets": websockets_version}


def unsupported_versions() -> str | None:
    """One line naming the installed libraries outside `SUPPORTED` and what to install,
    or None when both are supported."""
    wrong = [
        f"{name} {version}"
        for name, version in installed_versions().items()
        if not SpecifierSet(SUPPORTED[name]).contains(version, prereleases=True)
    ]
    if not wrong:
        return None
    wanted = " ".join(f"'{name}{spec}'" for name, spec in SUPPORTED.items())
    return (
        f"{' and '.join(wrong)} not supported: the broker's WebSocket protocol extends "
        f"uvicorn's and websockets' internals; pip install {wanted}"
    )


class UnsupportedVersions(ImportError):
    """uvicorn or websockets outside `SUPPORTED`: what `PacketProtocol` reads may be gone."""


def require_supported_versions() -> None:
    """Raise `UnsupportedVersions` (with `unsupported_versions`' line) if need be."""
    problem = unsupported_versions()
    if problem is not None:
        raise UnsupportedVersions(problem)


_SIZE_LIMITS: tuple[str, ...]
if hasattr(ServerProtocol(), "current_size"):  # websockets 16 and later
    _PARTIAL_SIZE, _SIZE_LIMITS = "current_size", ("max_message_size", "max_fragment_size")
else:  # websockets 13 to 15
    _PARTIAL_SIZE, _SIZE_LIMITS = "cur_size", ("max_size",)

partial_message_size = attrgetter(_PARTIAL_SIZE)
"""`partial_message_size(conn)`: the bytes of a fragmented message under way on `conn`,
None between messages."""


def frame_size_limit(conn: ServerProtocol) -> int | None:
    """The largest frame `conn` accepts as a whole message (None: no limit)."""
    limits = [getattr(conn, name) for name in _SIZE_LIMITS]
    return min((limit for limit in limits if limit is not None), default=None)
