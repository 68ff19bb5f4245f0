"""Who may read the audit chain's head and re-verify it from the compliance console."""

from __future__ import annotations

import pytest

from bankhub import policy
from bankhub.models import Role, User

SUN = User("sun", "co.sun", "Sun", Role.COMPLIANCE, "hq")


def test_an_active_compliance_officer_may_check_the_chain() -> None:
    assert policy.may_check_audit_chain(SUN).allowed


def test_a_disabled_officer_may_not() -> None:
    decision = policy.may_check_audit_chain(User("x", "co.gone", "Gone", Role.COMPLIANCE, "hq", disabled=True))
    assert not decision.allowed and decision.code == "forbidden"


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.COMPLIANCE])
def test_no_other_role_may(role: Role) -> None:
    decision = policy.may_check_audit_chain(User("x", "someone", "Someone", role, "hq"))
    assert not decision.allowed and decision.code == "forbidden"
    # the 403 of /v1/compliance/audit/head and /audit/verify says why
    assert decision.reason is not None and "not a compliance officer" in decision.reason
