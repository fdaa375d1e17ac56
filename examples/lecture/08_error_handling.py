"""Lecture: error handling with gather - return_exceptions, and timeouts.

Without return_exceptions the first exception propagates out of gather (the other tasks
keep running); with return_exceptions=True exceptions come back as results, in order,
to be sorted out one by one. asyncio.wait_for turns a slow call into TimeoutError.
Run: python examples/lecture/08_error_handling.py
"""
import asyncio

import uvcore


async def fetch(name: str, delay: float, fail: bool = False) -> str:
    await asyncio.sleep(delay)
    if fail:
        raise ConnectionError(f"{name}: connection refused")
    return f"{name}: ok"


async def main() -> None:
    calls = [fetch("api-1", 0.01), fetch("api-2", 0.02, fail=True), fetch("api-3", 0.03)]
    try:
        await asyncio.gather(*calls)
    except ConnectionError as exc:
        print("without return_exceptions, gather raised:", exc)

    results = await asyncio.gather(
        fetch("api-1", 0.01), fetch("api-2", 0.02, fail=True), fetch("api-3", 0.03), return_exceptions=True
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    for result in results:
        print("  result:", repr(result))
    print(f"with return_exceptions: {len(ok)} ok, {len(failed)} failed")
    assert ok == ["api-1: ok", "api-3: ok"] and isinstance(failed[0], ConnectionError)

    try:
        await asyncio.wait_for(fetch("slow-api", 1.0), timeout=0.05)
    except asyncio.TimeoutError:
        print("wait_for: slow-api timed out after 0.05 s (and was cancelled)")


if __name__ == "__main__":
    uvcore.run(main())
