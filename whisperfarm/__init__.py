"""whisperfarm: the shared contract between the farm's components.

Wire messages, ZeroMQ frame codec, packet framing, settings base, transcript formats and
the umbrella CLI launcher. Components depend on this package, never on each other.
"""

__version__ = "0.1.0"
