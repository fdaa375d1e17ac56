"""Network methods of uvcore.Loop (transports, servers, TLS, UDP, pipes, subprocesses).

Loop inherits NetworkMixin; the C transports live in csrc/stream.c, tcp.c, unix.c, ...
"""


class NetworkMixin:
    """create_server / create_connection and friends; filled in by the transports work."""
