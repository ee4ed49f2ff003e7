"""Client side of protocol v1, shared by every client component (source CLI, GUI).

Decode any audio/video file into 1000-frame packets (`decode`, `feed`) and stream it
to the broker with ack/resume (`client`), reporting typed outcomes (`errors`). It lives
in the contract package because components never import each other.
"""
