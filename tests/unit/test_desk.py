"""The pure core of the desk: routing choice, estimated wait, FAQ matching, business hours,
and the cursors that cut a revoked conversation off."""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bankhub.desk.faq import DEFAULT_FAQ, FaqEntry, answer, normalise
from bankhub.desk.hours import BusinessHours, format_hhmm, parse_hhmm
from bankhub.desk.routing import AgentLoad, estimate_wait, free_slots, plan, serving_slots
from bankhub.protocol.cursors import DeliveryCursors, Verdict

SH = zoneinfo.ZoneInfo("Asia/Shanghai")


def _agent(uid: str, capacity: int = 2, active: int = 0, state: str = "available", last: float | None = None) -> AgentLoad:
    return AgentLoad(uid, state, capacity, active, last)


# --- routing ---------------------------------------------------------------------------


def test_the_least_loaded_available_agent_takes_the_next_customer() -> None:
    agents = [_agent("a", active=2, capacity=3), _agent("b", active=0), _agent("c", active=1)]
    assert [(x.session_id, x.agent_id) for x in plan(agents, ["s1"])] == [("s1", "b")]


def test_equally_loaded_agents_take_turns_longest_idle_first() -> None:
    agents = [_agent("a", last=300.0), _agent("b", last=100.0), _agent("c", last=None), _agent("d", last=200.0)]
    # never assigned first, then the oldest last assignment; each assignment moves the agent to the back
    assert [x.agent_id for x in plan(agents, ["s1", "s2", "s3", "s4", "s5"])] == ["c", "b", "d", "a", "c"]


def test_nobody_goes_over_capacity_and_the_queue_stops_at_the_first_customer_nobody_can_take() -> None:
    agents = [_agent("a", capacity=1), _agent("b", capacity=2, active=1), _agent("c", capacity=5, state="busy")]
    decided = plan(agents, ["s1", "s2", "s3", "s4"])
    assert [x.session_id for x in decided] == ["s1", "s2"]  # a prefix: FIFO, nobody behind skips ahead
    assert sorted(x.agent_id for x in decided) == ["a", "b"]


def test_busy_and_away_agents_take_nobody() -> None:
    assert plan([_agent("a", state="busy"), _agent("b", state="away")], ["s1"]) == []
    assert free_slots([_agent("a", state="busy"), _agent("b", capacity=3, active=1)]) == 2
    assert serving_slots([_agent("a", state="away"), _agent("b", capacity=3, active=1)]) == 3


def test_a_transferred_customer_goes_to_someone_else_when_possible() -> None:
    agents = [_agent("a", active=0), _agent("b", active=1)]
    assert plan(agents, ["s1"], avoid={"s1": "a"})[0].agent_id == "b"
    assert plan([_agent("a")], ["s1"], avoid={"s1": "a"})[0].agent_id == "a"  # nobody else: back to them


@given(
    capacities=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=6),
    loads=st.lists(st.integers(min_value=0, max_value=4), min_size=6, max_size=6),
    states=st.lists(st.sampled_from(["available", "busy", "away"]), min_size=6, max_size=6),
    waiting=st.integers(min_value=0, max_value=30),
)
def test_plan_properties(capacities: list[int], loads: list[int], states: list[str], waiting: int) -> None:
    agents = [_agent(f"a{i}", capacity=c, active=min(loads[i], c), state=states[i]) for i, c in enumerate(capacities)]
    sessions = [f"s{i}" for i in range(waiting)]
    decided = plan(agents, sessions)
    # a FIFO prefix, as long as the free capacity allows
    assert [x.session_id for x in decided] == sessions[: len(decided)]
    assert len(decided) == min(waiting, free_slots(agents))
    final = {a.user_id: a.active for a in agents}
    for x in decided:
        final[x.agent_id] += 1
    for a in agents:
        assert final[a.user_id] <= a.capacity
        if a.state != "available":
            assert final[a.user_id] == a.active
    # least loaded: when an agent last took someone, every agent that still has room now had
    # room then and was no less loaded, so none of them ends two or more below that agent
    took = {x.agent_id for x in decided}
    for a in agents:
        if a.state == "available" and final[a.user_id] < a.capacity:
            assert all(final[a.user_id] >= final[t] - 1 for t in took)


def test_estimated_wait() -> None:
    assert estimate_wait(1, 3, 300) == 100
    assert estimate_wait(4, 2, 300) == 600
    assert estimate_wait(1, 1, 250.5) == 251  # rounded up
    assert estimate_wait(3, 0, 300) is None  # nobody serving: no estimate
    assert estimate_wait(0, 2, 300) == 0


# --- FAQ ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "entry"),
    [
        ("我的卡丢了怎么办", "answer", "card_loss"),
        ("I LOST MY CARD on the metro", "answer", "card_loss"),
        ("how do I activate the new card?", "answer", "card_activation"),
        ("信用卡还款日是哪天", "answer", "repayment"),
        ("What is the interest rate on a mortgage?", "answer", "loan_rate"),
        ("转人工", "human", None),
        ("人工客服", "human", None),
        ("Can I talk to an agent please", "human", None),
        ("ＡＧＥＮＴ", "human", None),  # full-width letters
        ("I feel fine", "unknown", None),  # "fee" is a word of its own, not part of "feel"
        ("my neighbour's dog", "unknown", None),
        ("", "unknown", None),
    ],
)
def test_the_bot_matches_keywords(text: str, kind: str, entry: str | None) -> None:
    decision = answer(text)
    assert decision.kind == kind
    assert (decision.entry.id if decision.entry else None) == entry


def test_the_entry_with_most_keyword_hits_wins() -> None:
    faq = (FaqEntry("a", ("card",), "A"), FaqEntry("b", ("card", "limit"), "B"))
    assert answer("raise my card limit", faq).entry == faq[1]
    assert answer("my card", faq).entry == faq[0]  # a tie goes to the earlier entry
    assert answer("my card limit", faq).hits == ("card", "limit")


def test_every_default_entry_answers_its_own_keywords() -> None:
    for entry in DEFAULT_FAQ:
        for keyword in entry.keywords:
            found = answer(f"question: {keyword}?")
            assert found.kind in ("answer", "human"), keyword
    assert normalise("  Ｌｏｓｔ   Card ") == "lost card"


# --- business hours ----------------------------------------------------------------------


def _at(y: int, m: int, d: int, hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=SH)


def test_weekday_hours() -> None:
    hours = BusinessHours("Asia/Shanghai", (1, 2, 3, 4, 5), parse_hhmm("09:00"), parse_hhmm("18:00"))
    monday = _at(2025, 3, 3, 10)
    assert hours.is_open(monday)
    assert not hours.is_open(_at(2025, 3, 3, 8, 59))
    assert hours.is_open(_at(2025, 3, 3, 9, 0)) and not hours.is_open(_at(2025, 3, 3, 18, 0))
    assert not hours.is_open(_at(2025, 3, 8, 12))  # Saturday
    # the clock may be in UTC: 01:30 UTC is 09:30 in Shanghai
    assert hours.is_open(dt.datetime(2025, 3, 3, 1, 30, tzinfo=dt.timezone.utc))
    assert hours.next_open(_at(2025, 3, 7, 19)) == _at(2025, 3, 10, 9)  # Friday evening -> Monday 09:00
    assert hours.next_open(_at(2025, 3, 3, 7)) == _at(2025, 3, 3, 9)
    assert hours.next_open(monday) == monday
    assert hours.describe() == "Mon-Fri 09:00-18:00 (Asia/Shanghai)"


def test_overnight_and_all_day_and_never() -> None:
    night = BusinessHours("Asia/Shanghai", (5,), parse_hhmm("22:00"), parse_hhmm("06:00"))  # Friday night
    assert night.is_open(_at(2025, 3, 7, 23)) and night.is_open(_at(2025, 3, 8, 5, 59))
    assert not night.is_open(_at(2025, 3, 8, 6)) and not night.is_open(_at(2025, 3, 8, 23))
    always = BusinessHours()
    assert always.is_open(_at(2025, 3, 9, 3)) and always.describe() == "every day, 24 hours"
    never = BusinessHours(days=())
    assert not never.is_open(_at(2025, 3, 9, 3)) and never.next_open(_at(2025, 3, 9, 3)) is None
    assert never.describe() == "closed"


def test_hours_validation_and_parsing() -> None:
    assert parse_hhmm("24:00") == 1440 and format_hhmm(570) == "09:30"
    for bad in ("9", "09:60", "25:00", "ab:cd", "9:5"):
        with pytest.raises(ValueError):
            parse_hhmm(bad)
    with pytest.raises(ValueError):
        BusinessHours("Mars/Olympus").validate()
    with pytest.raises(ValueError):
        BusinessHours(days=(0, 8)).validate()


@given(st.integers(min_value=0, max_value=10_000_000), st.integers(min_value=0, max_value=1439), st.integers(min_value=1, max_value=1440))
def test_next_open_is_open_or_never(seconds: int, opens: int, closes: int) -> None:
    rng = random.Random(seconds)
    days = tuple(sorted(rng.sample(range(1, 8), rng.randint(0, 7))))
    hours = BusinessHours("Asia/Shanghai", days, opens, closes)
    now = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=seconds)
    found = hours.next_open(now)
    if found is None:
        assert not days
    else:
        assert found >= now and hours.is_open(found)


# --- revoked conversations in the delivery cursors ---------------------------------------


def test_a_revoked_conversation_is_never_delivered_until_restored() -> None:
    cursors = DeliveryCursors()
    assert cursors.offer("c", 1) is Verdict.DELIVER
    cursors.revoke("c")
    assert cursors.revoked("c") and cursors.get("c") is None and "c" not in cursors.snapshot()
    assert cursors.offer("c", 2) is Verdict.DUPLICATE  # dropped, and no gap fill
    assert cursors.offer("c", 9) is Verdict.DUPLICATE
    assert cursors.advance("c", 2) is False
    cursors.set("c", 5)  # a sync declaring it is ignored
    assert cursors.get("c") is None
    assert cursors.offer("other", 1) is Verdict.DELIVER
    cursors.restore("c")
    assert cursors.offer("c", 7) is Verdict.DELIVER  # access back: from the first seq seen
