"""Who may request, approve, reject and download an eDiscovery export (dual control)."""

from __future__ import annotations

from bankhub import policy
from bankhub.models import Role, User

SUN = User("u-sun", "co.sun", "Sun", Role.COMPLIANCE, "ho")
QIAN = User("u-qian", "co.qian", "Qian", Role.COMPLIANCE, "ho")
GONE = User("u-gone", "co.gone", "Gone", Role.COMPLIANCE, "ho", disabled=True)
WANG = User("u-wang", "rm.wang", "Wang", Role.RM, "bj")
ADMIN = User("u-admin", "ho.admin", "Admin", Role.HEAD_OFFICE_ADMIN, "ho")


def test_only_active_officers_with_a_reason_code_request() -> None:
    assert policy.may_request_export(SUN, "regulatory_request").allowed
    for who in (WANG, ADMIN, GONE):
        assert policy.may_request_export(who, "regulatory_request").code == "forbidden"
    assert policy.may_request_export(SUN, "curiosity").code == "invalid_request"
    assert policy.may_view_exports(QIAN).allowed and policy.may_view_exports(ADMIN).code == "forbidden"


def test_a_second_officer_approves_never_the_requester() -> None:
    assert policy.may_approve_export(QIAN, SUN, state="pending_approval").allowed
    own = policy.may_approve_export(SUN, SUN, state="pending_approval")
    assert own.code == "forbidden" and "second compliance officer" in (own.reason or "")
    assert policy.may_approve_export(WANG, SUN, state="pending_approval").code == "forbidden"
    assert policy.may_approve_export(GONE, SUN, state="pending_approval").code == "forbidden"
    # every principal is checked now: a requester who left the function no longer counts
    assert policy.may_approve_export(QIAN, GONE, state="pending_approval").code == "conflict"
    assert policy.may_approve_export(QIAN, WANG, state="pending_approval").code == "conflict"
    for state in ("rejected", "running", "ready", "failed"):
        assert policy.may_approve_export(QIAN, SUN, state=state).code == "conflict"


def test_reject_or_withdraw_while_pending() -> None:
    assert policy.may_reject_export(SUN, state="pending_approval").allowed  # the requester withdraws
    assert policy.may_reject_export(QIAN, state="pending_approval").allowed
    assert policy.may_reject_export(QIAN, state="running").code == "conflict"
    assert policy.may_reject_export(WANG, state="pending_approval").code == "forbidden"


def test_only_the_requester_or_approver_downloads_once_ready() -> None:
    both = {"requested_by": SUN.id, "approved_by": QIAN.id}
    assert policy.may_download_export(SUN, state="ready", **both).allowed
    assert policy.may_download_export(QIAN, state="ready", **both).allowed
    third = User("u-third", "co.third", "Third", Role.COMPLIANCE, "ho")
    assert policy.may_download_export(third, state="ready", **both).code == "forbidden"
    assert policy.may_download_export(WANG, state="ready", requested_by=WANG.id, approved_by=None).code == "forbidden"
    for state in ("pending_approval", "running", "failed", "rejected"):
        assert policy.may_download_export(SUN, state=state, **both).code == "not_ready"


def test_only_the_requester_or_approver_runs_an_approved_export_and_never_a_ready_one() -> None:
    def run(actor: User, state: str, approved_by: str | None = QIAN.id) -> tuple[bool, str | None]:
        d = policy.may_run_export(actor, requested_by=SUN.id, approved_by=approved_by, state=state)
        return d.allowed, d.code

    assert run(SUN, "running") == (True, None) and run(QIAN, "failed") == (True, None)
    assert run(SUN, "ready") == (False, "conflict")  # never rebuilt: download it
    assert run(QIAN, "ready") == (False, "conflict")
    assert run(SUN, "pending_approval", None) == (False, "conflict")
    assert run(SUN, "rejected", None) == (False, "conflict")
    third = User("u-zhou", "co.zhou", "Zhou", Role.COMPLIANCE, "ho")
    assert run(third, "running") == (False, "forbidden")  # neither requester nor approver
    assert run(WANG, "running") == (False, "forbidden")
    assert run(User("u-sun", "co.sun", "Sun", Role.COMPLIANCE, "ho", disabled=True), "running")[0] is False
