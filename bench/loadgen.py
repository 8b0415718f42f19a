"""A small HTTP/1.1 keep-alive load generator (asyncio, raw sockets), run in its own process.

Each of ``concurrency`` connections sends POST requests back to back for ``seconds``;
bodies cycle through the given list. Prints one JSON line: requests/s, p50, p99 (ms), errors.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time


async def _conn(host, port, bodies, counter, until, lat, errors, path):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < until:
            body = bodies[next(counter) % len(bodies)]  # one sequence for all connections: no body sent twice
            # before the list wraps (event batches carry unique ids)
            req = (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


async def run(host, port, bodies, concurrency, seconds, warmup, path):
    lat: list[float] = []
    errors: list[int] = []
    counter = itertools.count()
    if warmup:
        await asyncio.gather(
            *[
                _conn(host, port, bodies, counter, time.perf_counter() + warmup, [], [], path)
                for _ in range(concurrency)
            ]
        )
    t0 = time.perf_counter()
    await asyncio.gather(
        *[_conn(host, port, bodies, counter, t0 + seconds, lat, errors, path) for _ in range(concurrency)]
    )
    elapsed = time.perf_counter() - t0
    lat.sort()
    n = len(lat)

    def pct(p):
        return lat[min(n - 1, int(p * n))] * 1000 if n else float("nan")

    return {
        "concurrency": concurrency,
        "requests": n,
        "rps": n / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "errors": len(errors),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bodies", required=True, help="JSONL file, one request body per line")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--path", default="/v1/suggest")
    a = ap.parse_args()
    with open(a.bodies) as f:
        bodies = [line.strip().encode() for line in f if line.strip()]
    print(json.dumps(asyncio.run(run(a.host, a.port, bodies, a.concurrency, a.seconds, a.warmup, a.path))))


if __name__ == "__main__":
    main()
