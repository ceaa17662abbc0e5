"""The app behind the proxy in `benches/proxy_load.py`: FastAPI answering `GET /api/hello`
with 200 text/plain `hello`, the smallest request a FastAPI user writes.

    uvicorn --app-dir benches/peers fastapi_hello:app --host 127.0.0.1 --port 8000 \
        --loop uvloop --http httptools --log-level warning --no-access-log
"""

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()


@app.get("/api/hello", response_class=PlainTextResponse)
async def hello() -> str:
    return "hello"
