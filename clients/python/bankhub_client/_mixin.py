"""The base of the SDK's HTTP mixins (:class:`~bankhub_client.Api` is made of them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

__all__ = ["HttpMixin"]


class HttpMixin:
    """What a mixin of :class:`~bankhub_client.Api` may call: :class:`~bankhub_client.Api`
    implements both (a request with the session's token and the SDK's error mapping; a
    checked decode of an answer into ``type_``)."""

    async def _request(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, str | int] | None = None, auth: bool = True
    ) -> httpx.Response:
        raise NotImplementedError

    @staticmethod
    def _decode(response: httpx.Response, type_: type[Any]) -> Any:
        raise NotImplementedError
