"""The uvicorn + Starlette peer of ringstream's WebSocket benchmarks: Starlette's documented
WebSocket endpoint shape, echoing every text or binary message on /ws/echo."""

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def echo(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        return


app = Starlette(routes=[WebSocketRoute("/ws/echo", echo)])
