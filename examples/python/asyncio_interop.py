"""asyncio interop: jobrunner futures are concurrent.futures.Futures, so asyncio awaits
them unchanged (`asyncio.wrap_future`, or `loop.run_in_executor(pool, ...)`).

Ten blocking calls run on the pool while the event loop stays free; the results are
gathered in order. Exits 1 if a result is wrong. Run: see worker_pool.py.
"""

from __future__ import annotations

import asyncio
import sys
import time

import jobrunner


def blocking_lookup(n: int) -> int:
    time.sleep(0.01)  # stands for a blocking client library call
    return n * n


async def main() -> int:
    loop = asyncio.get_running_loop()
    with jobrunner.Pool(threads=4) as pool:
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        beat = asyncio.create_task(heartbeat())
        via_wrap = [asyncio.wrap_future(pool.submit(blocking_lookup, n)) for n in range(5)]
        via_executor = [loop.run_in_executor(pool, blocking_lookup, n) for n in range(5, 10)]
        results = await asyncio.gather(*via_wrap, *via_executor)
        beat.cancel()
    print(f"asyncio_interop: 10 blocking calls on the pool, results {results}")
    print(f"asyncio_interop: the event loop stayed free ({'yes' if ticks > 0 else 'no'})")
    if results != [n * n for n in range(10)] or ticks == 0:
        print("asyncio_interop: FAILED", file=sys.stderr)
        return 1
    print("asyncio_interop: ok")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
