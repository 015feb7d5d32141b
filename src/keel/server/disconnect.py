"""Work stops when its client goes away: a request whose client disconnects before the response is
complete has its handling cancelled, so the models stop working for nobody (an embedding call after the
batch in hand, a generation at the next token; `gateway/providers/turns.py`).

Once a request's body has been read, the server's receive channel has nothing more to say but
`http.disconnect`; this middleware listens for it while the app works, and cancels the app if it comes
first. The app still hears the disconnect through its own receive (a streaming response does). The
request is logged and counted with status 499, nginx's "client closed request"; nothing is sent.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.logs import get_logger

log = get_logger(__name__)

CLIENT_CLOSED_REQUEST = 499


class CancelOnDisconnect:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_read, gone = asyncio.Event(), asyncio.Event()
        complete = False

        async def app_receive() -> Message:
            if body_read.is_set():
                await gone.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body", False):
                body_read.set()
            return message

        async def app_send(message: Message) -> None:
            nonlocal complete
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        work = asyncio.ensure_future(self.app(scope, app_receive, app_send))

        async def watch() -> None:
            await body_read.wait()
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()
            if not complete and not work.done():
                work.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await work
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not gone.is_set() or (current is not None and current.cancelling()):
                raise  # the server itself is stopping this request
            log.info("request_abandoned", path=scope["path"])
            # The server drops what is sent after a disconnect; the status reaches the logs and metrics.
            with contextlib.suppress(OSError, RuntimeError):
                await send({"type": "http.response.start", "status": CLIENT_CLOSED_REQUEST, "headers": []})
                await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
