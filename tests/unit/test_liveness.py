"""The typing debounce (pure) and the receipt and presence rules of the policy."""

from __future__ import annotations

import pytest

from bankhub import policy
from bankhub.models import Membership, Role, User
from bankhub.protocol.liveness import DROP, FORWARD, FULL, TypingGate


def _gate(max_tracked: int = 100) -> TypingGate:
    return TypingGate(interval=3.0, ttl=6.0, max_tracked=max_tracked)


K = ("conv", "li")


def test_a_start_is_forwarded_once_per_interval_then_refreshed() -> None:
    g = _gate()
    assert g.offer(K, True, 0.0) == FORWARD
    assert g.offer(K, True, 1.0) == DROP
    assert g.offer(K, True, 2.9) == DROP
    assert g.offer(K, True, 3.0) == FORWARD  # a refresh keeps receivers' indicator alive
    assert g.offer(("conv", "zhang"), True, 3.1) == FORWARD  # per member


def test_a_stop_is_forwarded_only_after_a_start() -> None:
    g = _gate()
    assert g.offer(K, False, 0.0) == DROP
    assert g.offer(K, True, 0.0) == FORWARD
    assert g.offer(K, False, 0.5) == FORWARD
    assert g.offer(K, False, 0.6) == DROP
    assert g.offer(K, True, 0.7) == FORWARD  # a new start right after a stop


def test_a_state_expires_so_a_lost_stop_costs_nothing() -> None:
    g = _gate()
    assert g.offer(K, True, 0.0) == FORWARD
    assert g.offer(K, False, 6.0) == DROP  # expired: receivers already cleared it
    assert len(g) == 0


def test_the_gate_is_bounded() -> None:
    g = _gate(max_tracked=2)
    assert g.offer(("c", "a"), True, 0.0) == FORWARD
    assert g.offer(("c", "b"), True, 0.0) == FORWARD
    assert g.offer(("c", "c"), True, 1.0) == FULL
    assert g.offer(("c", "a"), False, 1.0) == FORWARD  # a stop always gets through
    assert g.offer(("c", "c"), True, 1.0) == FORWARD
    assert g.offer(("c", "d"), True, 7.0) == FORWARD  # the expired ones made room
    g.forget(("c", "d"))
    assert len(g) == 0


def test_the_gate_refuses_nonsense_bounds() -> None:
    with pytest.raises(ValueError):
        TypingGate(interval=5.0, ttl=1.0, max_tracked=1)


def _user(uid: str, role: Role = Role.CUSTOMER, rm_id: str | None = None, disabled: bool = False) -> User:
    return User(id=uid, username=uid, display_name=uid, role=role, org_id="o", rm_id=rm_id, disabled=disabled)


def test_presence_travels_only_along_relationships() -> None:
    li = _user("li", rm_id="wang")
    zhang, zhou = _user("zhang", rm_id="wang"), _user("zhou", rm_id="chen")
    wang = _user("wang", Role.RM)
    assert policy.may_see_presence(li, zhang, contact=True, blocked=False).allowed
    assert policy.may_see_presence(li, wang, contact=False, blocked=False).allowed  # my RM
    assert policy.may_see_presence(wang, li, contact=False, blocked=False).allowed  # my customer
    assert policy.may_see_presence(li, zhou, contact=False, blocked=False).code == "not_found"
    assert policy.may_see_presence(li, None, contact=False, blocked=False).code == "not_found"  # unknown
    assert not policy.may_see_presence(li, zhang, contact=True, blocked=True).allowed
    assert not policy.may_see_presence(li, wang, contact=False, blocked=True).allowed
    assert not policy.may_see_presence(wang, li, contact=False, blocked=True).allowed
    assert not policy.may_see_presence(li, li, contact=True, blocked=False).allowed
    gone = _user("li", disabled=True)
    assert not policy.may_see_presence(gone, zhang, contact=True, blocked=False).allowed
    assert not policy.may_see_presence(zhang, gone, contact=True, blocked=False).allowed  # a disabled target


def test_presence_needs_an_active_rm_on_the_rm_side() -> None:
    # users.rm_id is kept when an RM changes role or is disabled: the pointer alone is no
    # relationship (as for opening a direct conversation), seen from either side
    li = _user("li", rm_id="wang")
    for former in (_user("wang", Role.STAFF), _user("wang", Role.AGENT), _user("wang", Role.RM, disabled=True)):
        assert policy.may_see_presence(li, former, contact=False, blocked=False).code == "not_found"
        if not former.disabled:
            assert policy.may_see_presence(former, li, contact=False, blocked=False).code == "not_found"
    # an RM pointing at a customer, or a "customer" who is staff now, is no relationship either
    wang = _user("wang", Role.RM)
    assert not policy.may_see_presence(wang, _user("x", Role.STAFF, rm_id="wang"), contact=False, blocked=False).allowed
    assert not policy.may_see_presence(_user("x", Role.RM, rm_id="li"), li, contact=False, blocked=False).allowed
    # a contact stays a contact whatever the roles
    assert policy.may_see_presence(li, _user("wang", Role.STAFF), contact=True, blocked=False).allowed


@pytest.mark.parametrize(
    ("setting", "contact", "viewer", "shown"),
    [
        ("everyone", False, "everyone", True),
        ("everyone", True, "contacts", True),
        ("contacts", True, "everyone", True),
        ("contacts", False, "everyone", False),
        ("nobody", True, "everyone", False),
        ("everyone", True, "nobody", False),  # hiding mine hides theirs
    ],
)
def test_last_seen_visibility(setting: str, contact: bool, viewer: str, shown: bool) -> None:
    assert policy.last_seen_visible(setting, contact=contact, viewer_setting=viewer) is shown


def test_typing_and_read_positions_stop_at_a_block() -> None:
    li = _user("li", rm_id="wang")
    direct = Membership("conv", "direct", "li", "member", 1, 1)
    assert policy.may_type(li, direct).allowed
    refused = policy.may_type(li, direct, blocked=True)
    assert refused.code == "forbidden" and "block" in refused.reason
    assert policy.receipt_audience("a", ["a", "b"], set(), 100, blocked=True) == ["a"]  # my devices only
    positions = [("a", 3, True), ("b", 2, True)]
    assert policy.visible_read_positions("a", positions, 2, 100, blocked=True) == [("a", 3)]


def test_receipt_audience() -> None:
    members = ["a", "b", "c"]
    assert policy.receipt_audience("a", members, set(), 100) == members
    assert policy.receipt_audience("a", members, {"a"}, 100) == ["a"]  # I opted out: my devices only
    assert policy.receipt_audience("a", members, {"b"}, 100) == ["a", "c"]  # b opted out: sees no one's
    assert policy.receipt_audience("a", members, set(), 2) == ["a"]  # above the cap


def test_visible_read_positions() -> None:
    positions = [("a", 3, True), ("b", 2, True), ("c", 1, False)]
    assert policy.visible_read_positions("a", positions, 3, 100) == [("a", 3), ("b", 2)]
    assert policy.visible_read_positions("c", positions, 3, 100) == [("c", 1)]
    assert policy.visible_read_positions("a", positions, 3, 2) == [("a", 3)]


def test_the_contract_names_the_watch_limit_and_the_problem_codes() -> None:
    from pathlib import Path

    import msgspec

    from bankhub.http.openapi import openapi_document
    from bankhub.protocol.frames import WatchPresence
    from bankhub.settings import Settings, SettingsError

    # watch_presence: the setting binds, up to the frame schema's bound
    schema_max = msgspec.json.schema(WatchPresence)["$defs"]["WatchPresence"]["properties"]["user_ids"]["maxItems"]
    with pytest.raises(SettingsError):
        Settings.from_env({"BANKHUB_PRESENCE_MAX_WATCH": str(schema_max + 1)})
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    (row,) = [line for line in doc.splitlines() if line.startswith("| `watch_presence` |")]
    assert "BANKHUB_PRESENCE_MAX_WATCH" in row and str(schema_max) in row and "≤ 100" not in row
    # every problem status of the presence routes names its code
    paths = openapi_document()["paths"]
    for path, method, status, code in (
        ("/v1/presence", "get", "400", "invalid_request"),
        ("/v1/me/privacy", "put", "400", "invalid_request"),
        ("/v1/conversations/{conversation_id}/receipts", "get", "400", "invalid_request"),
        ("/v1/conversations/{conversation_id}/receipts", "get", "404", "not_found"),
    ):
        assert f"`{code}`" in paths[path][method]["responses"][status]["description"]
