"""The upstream of the proxy route's tests: a Starlette app on uvicorn.

Run by tests/support/upstream.rs as
`uvicorn app:app --app-dir tests/upstreams --host 127.0.0.1 --port P --log-level warning`.
The proxy mounts these paths as they are:

- `GET /api/hello`: 200 text/plain `hello`.
- `/api/echo` (any method): the request body streamed back as it arrives, with the request's
  content-type (default application/octet-stream).
- `GET /api/headers`: JSON of the request as uvicorn received it: method, path, raw_path,
  query, http_version and headers (uvicorn's raw list, in order, names as uvicorn gives them,
  bytes decoded as latin-1).
- `GET /api/stream?chunks=N&size=S&delay=D`: a chunked response of N chunks of S bytes (every
  byte of chunk i is i % 256), D seconds (float) between chunks.
- `GET /api/big?bytes=N`: N bytes with Content-Length, byte i being i % 251.
- `GET /api/slow?seconds=S`: 200 `slow` after S seconds.
- `GET /api/status/{code}`: that status, empty body.
- `POST /api/sha256`: JSON `{"length", "sha256"}` of the body, read as a stream.
- `/api/ws-echo`: a WebSocket that sends every message back as it came (text as text,
  binary as binary).
- `GET /auth`: `Authorization: Bearer <token>`: 200 with `x-client-id: user-<token>` when the
  token starts with `good`, 403 when it starts with `forbidden`, 401 otherwise;
  a 401 carries `WWW-Authenticate: Bearer`; `GET /auth/topics` answers as `/auth` and names
  the topics `good-<topic>` may join (`X-Allowed-Topics: <topic>, chat`);
  `GET /auth/slow` answers 200 after 5 s, `GET /auth/broken` answers 500.
"""

import asyncio
import hashlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


class _UnlistenedStreamingResponse(StreamingResponse):
    """A StreamingResponse that does not listen for the disconnect while it streams.

    Under uvicorn (ASGI spec 2.3) Starlette's StreamingResponse calls `receive()` concurrently
    with the body iterator to watch for a disconnect; when the iterator is `request.stream()`
    the two race for the request's body messages and the watcher swallows some. Here the body
    iterator is the only reader: a disconnect reaches it as ClientDisconnect.
    """

    async def __call__(self, scope, receive, send) -> None:
        await self.stream_response(send)


class Echo:
    """`/api/echo` as a raw ASGI endpoint, so that the route answers every method."""

    async def __call__(self, scope, receive, send) -> None:
        request = Request(scope, receive)
        content_type = request.headers.get("content-type", "application/octet-stream")
        response = _UnlistenedStreamingResponse(
            request.stream(), headers={"content-type": content_type}
        )
        await response(scope, receive, send)


async def headers(request: Request) -> Response:
    scope = request.scope
    return JSONResponse(
        {
            "method": scope["method"],
            "path": scope["path"],
            "raw_path": scope.get("raw_path", b"").decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "http_version": scope["http_version"],
            "headers": [
                [name.decode("latin-1"), value.decode("latin-1")]
                for name, value in scope["headers"]
            ],
        }
    )


async def stream(request: Request) -> Response:
    chunks = int(request.query_params.get("chunks", "1"))
    size = int(request.query_params.get("size", "1024"))
    delay = float(request.query_params.get("delay", "0"))

    async def body():
        for i in range(chunks):
            if i > 0 and delay > 0:
                await asyncio.sleep(delay)
            yield bytes([i % 256]) * size

    return StreamingResponse(body(), media_type="application/octet-stream")


_PATTERN = bytes(range(251))


def big_body(n: int) -> bytes:
    """bytes(i % 251 for i in range(n)), built without a Python loop per byte."""
    return (_PATTERN * (n // len(_PATTERN) + 1))[:n]


async def big(request: Request) -> Response:
    n = int(request.query_params.get("bytes", "0"))
    return Response(big_body(n), media_type="application/octet-stream")


async def slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("seconds", "1")))
    return PlainTextResponse("slow")


async def status(request: Request) -> Response:
    return Response(status_code=request.path_params["code"])


async def sha256(request: Request) -> Response:
    digest = hashlib.sha256()
    length = 0
    async for chunk in request.stream():
        digest.update(chunk)
        length += len(chunk)
    return JSONResponse({"length": length, "sha256": digest.hexdigest()})


async def auth(request: Request) -> Response:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.startswith("good"):
        return PlainTextResponse("ok", headers={"x-client-id": f"user-{token}"})
    if scheme.lower() == "bearer" and token.startswith("forbidden"):
        return PlainTextResponse("forbidden", status_code=403)
    return PlainTextResponse(
        "unauthorized", status_code=401, headers={"www-authenticate": "Bearer"}
    )


async def auth_topics(request: Request) -> Response:
    """Like `auth`, and a token `good-<topic>` may join only that topic and `chat`."""
    response = await auth(request)
    if response.status_code == 200:
        token = request.headers["authorization"].partition(" ")[2]
        topic = token.removeprefix("good-")
        response.headers["x-allowed-topics"] = f"{topic}, chat"
    return response


async def auth_slow(request: Request) -> Response:
    await asyncio.sleep(5)
    return PlainTextResponse("ok")


async def auth_broken(request: Request) -> Response:
    return PlainTextResponse("broken", status_code=500)


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await websocket.send_text(message["text"])
        else:
            await websocket.send_bytes(message["bytes"])


app = Starlette(
    routes=[
        WebSocketRoute("/api/ws-echo", ws_echo),
        Route("/api/hello", hello),
        Route("/api/echo", Echo()),
        Route("/api/headers", headers),
        Route("/api/stream", stream),
        Route("/api/big", big),
        Route("/api/slow", slow),
        Route("/api/status/{code:int}", status),
        Route("/api/sha256", sha256, methods=["POST"]),
        Route("/auth", auth),
        Route("/auth/topics", auth_topics),
        Route("/auth/slow", auth_slow),
        Route("/auth/broken", auth_broken),
    ]
)
