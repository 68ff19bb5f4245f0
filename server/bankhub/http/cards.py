"""HTTP API of verified service cards: the hub's public signing keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..actions import cards as card_actions
from .alerts import _SIGNED_HEADERS
from .handler import RouteTable, SignedCall, decode_json
from .problems import json_response

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["ROUTES", "OPENAPI_TYPES", "openapi_paths", "SigningKeyOut", "SigningKeys"]

ROUTES = RouteTable()


class SigningKeyOut(msgspec.Struct):
    """A public signing key as a JWK (RFC 8037): ``x`` is the raw Ed25519 public key,
    unpadded base64url; ``kid`` the ``key_id`` signatures name. ``status``: ``active`` (signs
    now) or ``retired`` (signed earlier cards and notices, which still verify)."""

    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    kid: str
    x: str
    alg: Literal["EdDSA"]
    use: Literal["sig"]
    status: Literal["active", "retired"]
    created_at: int


class SigningKeys(msgspec.Struct):
    keys: list[SigningKeyOut]


@ROUTES.public("GET", "/v1/signing-keys")
async def signing_keys(request: Request, hub: Hub) -> Response:
    response = json_response(await card_actions.signing_keys(hub))
    # public and rarely changing; a short cache keeps a rotated key from being missed for long
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


MAX_CARD_BYTES = 16 * 1024


@ROUTES.signed("POST", "/v1/cards", max_bytes=MAX_CARD_BYTES, json_body=True)
async def post_card(request: Request, hub: Hub, call: SignedCall) -> Response:
    item = decode_json(call.body, card_actions.SystemCardIn)
    out = await card_actions.send_from_system(hub, call.system, call.headers.idempotency_key, item)
    return json_response(out, 200 if out.duplicate else 201)


OPENAPI_TYPES: list[Any] = [SigningKeyOut, SigningKeys, card_actions.SystemCardIn, card_actions.SystemCardOut]


def openapi_paths(op: Any, ref: Any) -> dict[str, Any]:
    """The OpenAPI paths of this module (``op`` and ``ref`` are openapi.py's builders)."""
    keys = op(
        "The hub's public Ed25519 keys that sign service cards and official-account notices (no sign-in)",
        200,
        "SigningKeys",
        auth=False,
    )
    keys["description"] = (
        "Verify a card's or notice's `signature` {key_id, sig} with the key whose `kid` is its `key_id`, over the "
        "canonical payload of docs/protocol.md (\"Verified cards\"). A signature under an unknown key, or one that "
        "does not verify, means: not verified by the bank."
    )
    card = op(
        "A bank system sends a customer a service card (signed like the alert API)",
        201,
        "SystemCardOut",
        body=ref("SystemCardIn"),
        auth=False,
        extra=(400, 401, 403, 404, 409, 413, 415, 422, 429),
    )
    card["security"] = []  # HMAC-signed, see docs/alerts.md; no bearer token
    card["parameters"] = [
        *_SIGNED_HEADERS,
        {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 128}},
    ]
    card["responses"]["200"] = {"description": "A retry with the same Idempotency-Key: the original card", "content": {"application/json": {"schema": ref("SystemCardOut")}}}
    card["description"] = (
        "The hub's system user posts the card into the customer's direct conversation with their RM, signed at commit "
        "like any card. The system must be registered for the template's alert category: offer → marketing, "
        "bill_reminder → transaction, appointment → service (else 403 forbidden). 404 recipient_not_found: no such "
        "active customer; 409 conflict: the customer has no active RM; 400 invalid_request: a link or image off "
        "BANKHUB_CARD_DOMAINS. 422 sensitive_data: a title, line or button label carries a card, resident ID or account "
        "number, a CVV or a code (data-loss prevention, bank to customer: BANKHUB_DLP_STAFF_TO_CUSTOMER)."
    )
    return {"/v1/signing-keys": {"get": keys}, "/v1/cards": {"post": card}}
