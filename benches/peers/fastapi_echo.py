"""The uvicorn + FastAPI peer of ringstream's WebSocket benchmarks: the Starlette peer's echo
endpoint (FastAPI's `WebSocket` is Starlette's) routed by FastAPI on /ws/echo, so the two rows
differ by the framework's routing and dependency layer alone."""

from fastapi import FastAPI

from starlette_echo import echo

app = FastAPI()
app.add_api_websocket_route("/ws/echo", echo)
