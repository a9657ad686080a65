"""A bare aiohttp + uvloop server that answers `POST /v1/transactions` with a constant JSON
body: the ceiling `loadtest.bench` measures the edge against, with the same load tool.

    .venv/bin/python -m loadtest.ceiling --port 8099 --body-bytes 260 [--reuse-port]

It reads the request body and answers like the edge does (JSON, same size as a real answer)
but does no work: whatever the edge reaches is a share of what aiohttp alone reaches here.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import msgspec
import uvloop
from aiohttp import web

from ops.supervisor import LISTEN_BACKLOG

READY_TEXT = "ceiling ready"
_TEMPLATE = {"transaction_id": "t", "decision": "approve", "risk_score": 0.0, "reasons": [],
             "balance_after": "0.00", "currency": "EUR", "processed_in_ms": 0.0,
             "rules_version": None, "model_version": None, "pad": ""}


def constant_body(size: int) -> bytes:
    """A JSON answer shaped like the edge's, padded to exactly `size` bytes (or the bare
    shape when `size` is smaller)."""
    bare = msgspec.json.encode(_TEMPLATE)
    return msgspec.json.encode({**_TEMPLATE, "pad": "x" * max(0, size - len(bare))})


def build_app(body: bytes) -> web.Application:
    async def screen(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/transactions", screen)
    app.router.add_get("/readyz", ready)
    return app


async def serve(host: str, port: int, body: bytes, reuse_port: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(build_app(body), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        # The edge's backlog (ops/supervisor.py), so bursts of connects meet the same queue.
        await web.TCPSite(runner, host, port, reuse_port=reuse_port,
                          backlog=LISTEN_BACKLOG).start()
        print(f"{READY_TEXT} on http://{host}:{port} ({len(body)}-byte answer)", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-bytes", type=int, default=260)
    parser.add_argument("--reuse-port", action="store_true",
                        help="SO_REUSEPORT, for several processes on one port")
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, constant_body(args.body_bytes), args.reuse_port))


if __name__ == "__main__":
    main()
