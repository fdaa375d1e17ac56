"""Subprocesses and pipes for uvcore.Loop (filled in below)."""


class SubprocessMixin:
    pass
