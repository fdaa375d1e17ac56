"""Subprocesses and pipes for uvcore.Loop (filled in below)."""

__all__ = []


class SubprocessMixin:
    pass
