"""BustAPI's Python WebSocket echo (`@app.websocket`: the handler is a Python coroutine that
BustAPI's Rust server feeds), one worker, for benches/ws_load.py. BustAPI hands text frames
to the handler as str and sends str as text, so the load generator echoes text here
(`ringstream bench echo --text`).

Usage: bustapi_py_echo.py PORT
"""
import sys

from bustapi import BustAPI

app = BustAPI()


@app.websocket("/ws/echo")
async def echo(ws):
    async for message in ws:
        if isinstance(message, str):
            await ws.send(message)
        else:
            await ws.send_binary(message)


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), workers=1)
