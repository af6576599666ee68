#!/usr/bin/env python3
"""Keygate's memory under many connections: RSS idle, with N idle keep-alive connections, and with
N open SSE streams (memory per open stream).

Usage: bench/memory.py KEYGATE_PID GATEWAY_PORT TOKEN [N]
The gateway must serve bench/seed-full.yml with `openai` pointed at a keygate-mock started with
slow chunks (e.g. `--chunks 200 --chunk-delay-ms 100`, so each stream stays open for 20 s).
Prints one JSON object with the measurements.
"""

import asyncio
import json
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def request(path, token, body):
    return (
        f"POST {path} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {token}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n{body}"
    ).encode()


async def keep_alive(port, token, ready, gate):
    async with gate:
        return await _keep_alive(port, token, ready)


async def _keep_alive(port, token, ready):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = '{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}'
    writer.write(request("/v1/chat/completions", token, body))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")).split(b":")[1])
    await reader.readexactly(length)
    ready.append(1)
    return writer


async def open_stream(port, token, ready):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = '{"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "stream"}]}'
    writer.write(request("/v1/chat/completions", token, body))
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    await reader.readuntil(b"data:")
    ready.append(1)
    return reader, writer


async def main():
    pid, port, token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    result = {"connections": n, "rss_idle_kib": rss_kib(pid)}

    ready = []
    # Connections are opened (and answered) 50 at a time, as clients arriving over a moment would
    # be; they then all stay open and idle.
    gate = asyncio.Semaphore(50)
    writers = await asyncio.gather(*(keep_alive(port, token, ready, gate) for _ in range(n)))
    await asyncio.sleep(1)
    result["rss_keepalive_kib"] = rss_kib(pid)
    for writer in writers:
        writer.close()
    await asyncio.sleep(1)

    ready = []
    before = rss_kib(pid)
    start = time.monotonic()
    streams = await asyncio.gather(*(open_stream(port, token, ready) for _ in range(n)))
    result["streams_open_s"] = round(time.monotonic() - start, 2)
    await asyncio.sleep(1)
    during = rss_kib(pid)
    result["rss_before_streams_kib"] = before
    result["rss_streams_kib"] = during
    result["kib_per_open_stream"] = round((during - before) / n, 1)
    for _, writer in streams:
        writer.close()
    print(json.dumps(result))


asyncio.run(main())
