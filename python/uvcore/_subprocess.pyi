# Type stubs for uvcore._subprocess: pipes and child processes (uv_spawn) for the loop.
import asyncio
import subprocess
from collections.abc import Callable
from typing import IO, Any, TypeVar

__all__: list[str]

_P = TypeVar("_P", bound=asyncio.BaseProtocol)
_Stdio = int | IO[Any] | None

class SubprocessTransport(asyncio.SubprocessTransport):
    def send_signal(self, signal: int) -> None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...

class SubprocessMixin:
    """Loop's connect_read_pipe/connect_write_pipe and subprocess_exec/subprocess_shell."""
    async def connect_read_pipe(self, protocol_factory: Callable[[], _P], pipe: Any) -> tuple[asyncio.ReadTransport, _P]: ...
    async def connect_write_pipe(self, protocol_factory: Callable[[], _P], pipe: Any) -> tuple[asyncio.WriteTransport, _P]: ...
    async def subprocess_shell(
        self, protocol_factory: Callable[[], _P], cmd: bytes | str, *, stdin: _Stdio = ...,
        stdout: _Stdio = ..., stderr: _Stdio = ..., universal_newlines: bool = False, shell: bool = True,
        bufsize: int = 0, encoding: None = None, errors: None = None, text: bool | None = None, **kwargs: Any,
    ) -> tuple[asyncio.SubprocessTransport, _P]: ...
    async def subprocess_exec(
        self, protocol_factory: Callable[[], _P], program: Any, *args: Any, stdin: _Stdio = ...,
        stdout: _Stdio = ..., stderr: _Stdio = ..., universal_newlines: bool = False, shell: bool = False,
        bufsize: int = 0, encoding: None = None, errors: None = None, text: bool | None = None, **kwargs: Any,
    ) -> tuple[asyncio.SubprocessTransport, _P]: ...
