"""The one refusal for free text kept in the audit log: never a card, ID or account number, CVV or code."""

from __future__ import annotations

import pytest

from bankhub.actions.errors import ActionError
from bankhub.actions.sensitive import refuse_sensitive

CARD = "6222 0212 3456 7894"  # passes Luhn
ID = "11010519491231002X"  # a valid resident ID checksum


@pytest.mark.parametrize("value", [f"CASE {CARD}", f"身份证 {ID}", "card cvv 123", "OTP 482913"])
def test_a_value_is_refused_naming_the_field_never_the_value(value: str) -> None:
    with pytest.raises(ActionError) as refused:
        refuse_sensitive(case_ref="CASE-77", reason=value)
    assert refused.value.code == "sensitive_data" and refused.value.status == 422
    assert "reason" in refused.value.message and value not in refused.value.message


@pytest.mark.parametrize("value", [None, "", "CASE-2026-0042", "call 13800138000 on 2026-12-07", "¥2,000.00 refund"])
def test_ordinary_text_passes(value: str | None) -> None:
    refuse_sensitive(case_ref=value, note=value)


def test_the_code_may_be_the_callers() -> None:
    with pytest.raises(ActionError) as refused:
        refuse_sensitive("invalid_value", case_ref=CARD)
    assert refused.value.code == "invalid_value" and refused.value.status == 422
