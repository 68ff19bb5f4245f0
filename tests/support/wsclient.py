"""A raw protocol-v1 test client: exact frames in, exact frames out (no SDK smoothing)."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

__all__ = ["RawClient"]

_ids = itertools.count(1)


class RawClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.hello: dict[str, Any] = {}
        self._buffer: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, ws_url: str, token: str, **kwargs: Any) -> RawClient:
        ws = await connect(
            ws_url, subprotocols=["bankhub.v1"], additional_headers={"Authorization": f"Bearer {token}"}, **kwargs
        )
        client = cls(ws)
        client.hello = await client.expect("hello")
        return client

    async def send_frame(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def send_text(self, conversation_id: str, text: str, client_msg_id: str | None = None) -> str:
        """Send a text message; returns the frame id."""
        frame_id = f"f{next(_ids)}"
        await self.send_frame(
            {
                "type": "send",
                "id": frame_id,
                "conversation_id": conversation_id,
                "client_msg_id": client_msg_id or f"c{next(_ids)}",
                "body": {"kind": "text", "text": text},
            }
        )
        return frame_id

    async def request(self, frame: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send a frame with a fresh id and return the answer carrying that id."""
        frame = {**frame, "id": frame.get("id") or f"f{next(_ids)}"}
        await self.send_frame(frame)
        return await self.expect(None, frame_id=frame["id"], timeout=timeout)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        if self._buffer:
            return self._buffer.pop(0)
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        frame: dict[str, Any] = json.loads(raw)
        return frame

    async def expect(self, type_: str | None, *, frame_id: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame of ``type_`` (and/or answering ``frame_id``); others stay buffered."""
        for i, f in enumerate(self._buffer):
            if (type_ is None or f["type"] == type_) and (frame_id is None or f.get("id") == frame_id):
                return self._buffer.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no {type_ or 'answer'} frame (id={frame_id}) within {timeout}s; buffered: {self._buffer}")
            raw = await asyncio.wait_for(self.ws.recv(), remaining)
            f = json.loads(raw)
            if (type_ is None or f["type"] == type_) and (frame_id is None or f.get("id") == frame_id):
                return f
            self._buffer.append(f)

    async def messages(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The next ``n`` ``message`` events' messages."""
        return [(await self.expect("message", timeout=timeout))["message"] for _ in range(n)]

    async def quiet(self, type_: str, seconds: float = 0.3) -> bool:
        """True if no frame of ``type_`` arrives within ``seconds``."""
        try:
            await self.expect(type_, timeout=seconds)
        except (TimeoutError, asyncio.TimeoutError):
            return True
        return False

    async def close(self) -> None:
        await self.ws.close()
