"""BustAPI's turbo WebSocket echo (the handler runs in Rust), one worker, for benches/ws_load.py.

Usage: bustapi_echo.py PORT
"""
import sys

from bustapi import BustAPI

app = BustAPI()


@app.turbo_websocket("/ws/echo", response_prefix="")
def echo():
    pass


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), workers=1)
