"""A FastAPI app with ringstream in front of it (examples/fastapi/README.md).

ringstream forwards `/api/...` here, asks `GET /auth` before anyone joins a stream or sends
telemetry, and serves the streams, the downloads and the telemetry itself. This app keeps
its business routes and its auth, and never sees a slow or abusive client.

    pip install -r requirements.txt
    uvicorn app:app --host 127.0.0.1 --port 8000        # loopback: only ringstream talks to it

Routes (ringstream exposes the `/api/` ones; `/auth` stays on loopback):

- `GET /api/items`: the items, as JSON.
- `POST /api/items`: JSON `{"name": str, "price": float}` -> 201 with the stored item (needs a
  token).
- `GET /api/me`: who the bearer token belongs to, the topics it may stream, and the client's
  address as ringstream forwarded it (X-Forwarded-For, read by uvicorn's --proxy-headers).
- `POST /api/announce`: JSON `{"topic": str, "text": str}` -> published to every member of
  `/stream/news/{topic}` through ringstream's `POST /publish/{topic}` (loopback only), answers
  ringstream's `{"topic", "subscribers", "local_reached"}` (needs a token that may use the topic).
- `GET /auth`: ringstream's auth hook. `Authorization: Bearer <token>`: 200 with
  `X-Allowed-Topics` and `X-Client-Id` (the user's name) for a known token, 403 for a suspended one, 401 with
  `WWW-Authenticate: Bearer` otherwise. ringstream also sends `X-Original-Method` and
  `X-Original-URI` (the request it is asking about); this app does not need them.

Set RINGSTREAM_URL (default http://127.0.0.1:8080) to where ringstream listens.
"""

import asyncio
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from pydantic import BaseModel

RINGSTREAM_URL = os.environ.get("RINGSTREAM_URL", "http://127.0.0.1:8080").rstrip("/")


@dataclass(frozen=True)
class User:
    name: str
    # The topics of /stream/news/{topic} this user may join (ringstream enforces it).
    topics: tuple[str, ...]
    suspended: bool = False


# A real app asks its database or identity provider; the auth hook's answer is the same.
TOKENS = {
    "alice-token": User("alice", ("world", "tech")),
    "bob-token": User("bob", ("tech",)),
    "eve-token": User("eve", (), suspended=True),
}

app = FastAPI(title="ringstream example")

_ITEMS: list[dict] = [
    {"id": 1, "name": "keyboard", "price": 49.0, "owner": "alice"},
    {"id": 2, "name": "mouse", "price": 19.5, "owner": "bob"},
]


def _bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def current_user(authorization: Annotated[str | None, Header()] = None) -> User:
    """The user of the request's bearer token: 401 without a known one, 403 when suspended."""
    user = TOKENS.get(_bearer(authorization) or "")
    if user is None:
        raise HTTPException(401, "missing or unknown token", {"WWW-Authenticate": "Bearer"})
    if user.suspended:
        raise HTTPException(403, "suspended")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


# --- the auth hook ------------------------------------------------------------------------


@app.get("/auth", include_in_schema=False)
async def auth(authorization: Annotated[str | None, Header()] = None) -> Response:
    """Asked by ringstream before a stream join or a telemetry connection: 2xx allows, 401 and
    403 go back to the client as they are, anything else counts as a failure."""
    user = TOKENS.get(_bearer(authorization) or "")
    if user is None:
        return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
    if user.suspended:
        return Response(status_code=403)
    # An empty list would allow no topic at all; ringstream answers 403 to any other topic.
    # X-Client-Id: with client_id = "auth", ringstream counts this user's connections and
    # rates as one client, whatever address each stream comes from.
    return Response(
        status_code=200,
        headers={"X-Allowed-Topics": ", ".join(user.topics), "X-Client-Id": user.name},
    )


# --- business routes ----------------------------------------------------------------------


class NewItem(BaseModel):
    name: str
    price: float


class Announcement(BaseModel):
    topic: str
    text: str


@app.get("/api/items")
async def list_items() -> list[dict]:
    return _ITEMS


@app.post("/api/items", status_code=201)
async def create_item(item: NewItem, user: CurrentUser) -> dict:
    stored = {"id": len(_ITEMS) + 1, "name": item.name, "price": item.price, "owner": user.name}
    _ITEMS.append(stored)
    return stored


@app.get("/api/me")
async def me(user: CurrentUser, request: Request) -> dict:
    return {
        "user": user.name,
        "topics": list(user.topics),
        # The real client: uvicorn reads X-Forwarded-For from 127.0.0.1 (its default
        # --forwarded-allow-ips), and ringstream sets it to the address it accepted.
        "client": request.client.host if request.client else None,
        "request_id": request.headers.get("x-request-id"),
    }


# No proxy from the environment for this loopback call (urllib would honour http_proxy).
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _publish(topic: str, message: dict) -> dict:
    """POST /publish/{topic} on ringstream; blocking, so it runs on a worker thread."""
    request = urllib.request.Request(
        f"{RINGSTREAM_URL}/publish/{urllib.parse.quote(topic, safe='')}",
        data=json.dumps(message).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with _LOOPBACK.open(request, timeout=5) as response:
        return json.load(response)


@app.post("/api/announce")
async def announce(announcement: Announcement, user: CurrentUser) -> dict:
    if announcement.topic not in user.topics:
        raise HTTPException(403, f"{user.name} may not announce on {announcement.topic}")
    message = {"from": user.name, "text": announcement.text}
    try:
        return await asyncio.to_thread(_publish, announcement.topic, message)
    except urllib.error.HTTPError as e:
        raise HTTPException(502, f"ringstream answered {e.code}") from e
    except OSError as e:
        raise HTTPException(502, f"ringstream is unreachable: {e}") from e
