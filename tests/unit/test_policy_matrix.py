"""The whole authorization matrix: every role x resource x action cell is asserted, denials included.

The world: head office HO; Beijing branch BJ (with sub-branch HD); Shanghai branch SH.
RM wang (BJ) has customers li (BJ) and zhang (HD); RM chen (SH) has customer zhou (SH).
For each role, the actor is a typical user of that role (the customer is wang's, the RM
is wang himself, the branch admin administers BJ). Expected values are written out, not
computed, so a change to the policy must change this table.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bankhub import policy
from bankhub.models import Membership, OfficialAccount, Role, User

HO, BJ, HD, SH = "org-ho", "org-bj", "org-hd", "org-sh"
ANCESTRY = {HO: [HO], BJ: [BJ, HO], HD: [HD, BJ, HO], SH: [SH, HO]}

WANG = User("wang", "rm.wang", "Wang", Role.RM, BJ)
CHEN = User("chen", "rm.chen", "Chen", Role.RM, SH)
LI = User("li", "c.li", "Li", Role.CUSTOMER, BJ, rm_id="wang")
ZHANG = User("zhang", "c.zhang", "Zhang", Role.CUSTOMER, HD, rm_id="wang")
ZHOU = User("zhou", "c.zhou", "Zhou", Role.CUSTOMER, SH, rm_id="chen")
ZHAO = User("zhao", "agent.zhao", "Zhao", Role.AGENT, HO)
CLERK = User("clerk", "staff.qian", "Qian", Role.STAFF, BJ)
LIU = User("liu", "rm.liu", "Liu", Role.RM, BJ)
GONE_RM = User("gone", "rm.gone", "Gone", Role.RM, BJ, disabled=True)
WANG_AS_STAFF = User("wang", "rm.wang", "Wang", Role.STAFF, BJ)  # rm.wang after a role change: c.li still points at him
QIAN = User("qian", "agent.qian", "Qian", Role.AGENT, HO)
GONE_AGENT = User("gone-agent", "agent.gone", "Gone", Role.AGENT, HO, disabled=True)
HO_CHECKER = User("hochecker", "ho.checker", "HO checker", Role.HEAD_OFFICE_ADMIN, HO)
HO_GONE = User("hogone", "ho.gone", "HO gone", Role.HEAD_OFFICE_ADMIN, HO, disabled=True)

ACTORS = {
    "customer": LI,
    "rm": WANG,
    "agent": ZHAO,
    "staff": CLERK,
    "branch_admin": User("bradmin", "br.admin", "BJ admin", Role.BRANCH_ADMIN, BJ),
    "head_office_admin": User("hoadmin", "ho.admin", "HO admin", Role.HEAD_OFFICE_ADMIN, HO),
    "compliance": User("sun", "co.sun", "Sun", Role.COMPLIANCE, HO),
}




def _account(handle: str, owner: str, audience: str = "customer", default: bool = False) -> OfficialAccount:
    return OfficialAccount(handle, handle, handle, "", owner, audience, default, False, 0, tuple(ANCESTRY[owner]))


SERVICE = _account("bank.service", HO, default=True)
INTERNAL = _account("bank.internal", HO, "staff", default=True)
BJ_ACCOUNT = _account("bj.branch", BJ)
SH_ACCOUNT = _account("sh.branch", SH)


def _member(actor: User) -> Membership:
    return Membership("conv", "group", actor.id, "member", 0, 5)


def _someone_elses() -> Membership:
    return Membership("conv", "group", "somebody-else", "member", 0, 5)


Cell = Callable[[User], policy.Decision]
ACTIONS: dict[str, Cell] = {
    "direct:open with rm.wang": lambda a: policy.may_open_direct(a, WANG),
    "direct:open with rm.chen": lambda a: policy.may_open_direct(a, CHEN),
    "direct:open with c.zhang (wang's book)": lambda a: policy.may_open_direct(a, ZHANG),
    "direct:open with c.zhou (chen's book)": lambda a: policy.may_open_direct(a, ZHOU),
    "direct:open with agent.zhao": lambda a: policy.may_open_direct(a, ZHAO),
    "group:create with c.zhang": lambda a: policy.may_create_group(a, [ZHANG]),
    "group:create with c.zhou": lambda a: policy.may_create_group(a, [ZHOU]),
    "group:create with staff only": lambda a: policy.may_create_group(a, [ZHAO, CLERK]),
    "conversation:send as member": lambda a: policy.may_send(a, _member(a)),
    "conversation:read as member": lambda a: policy.may_read_conversation(a, _member(a)),
    "conversation:send as non-member": lambda a: policy.may_send(a, None),
    "card:send as member": lambda a: policy.may_send_card(a, _member(a)),
    "card:send as non-member": lambda a: policy.may_send_card(a, None),
    "conversation:read others' membership": lambda a: policy.may_read_conversation(a, _someone_elses()),
    "conversation:list/sync own": lambda a: policy.may_read_conversation_list(a),
    "user:role of c.zhang (HD) -> staff": lambda a: policy.may_change_role(a, ZHANG, Role.STAFF, ANCESTRY[HD]),
    "user:role of rm.chen (SH) -> staff": lambda a: policy.may_change_role(a, CHEN, Role.STAFF, ANCESTRY[SH]),
    "user:role of rm.wang (BJ) -> branch_admin": lambda a: policy.may_change_role(a, WANG, Role.BRANCH_ADMIN, ANCESTRY[BJ]),
    "ws:issue ticket": lambda a: policy.may_issue_ws_ticket(a),
    "customer:reassign c.zhang (HD) -> rm.wang (BJ)": lambda a: policy.may_reassign_customer(
        a, ZHANG, WANG, ANCESTRY[HD], ANCESTRY[BJ]
    ),
    "customer:reassign c.zhang (HD) -> rm.chen (SH)": lambda a: policy.may_reassign_customer(
        a, ZHANG, CHEN, ANCESTRY[HD], ANCESTRY[SH]
    ),
    "compliance:privileged read with a reason": lambda a: policy.may_read_privileged(a, "fraud_investigation"),
    "compliance:privileged read without a reason": lambda a: policy.may_read_privileged(a, ""),
    "account:create for BJ": lambda a: policy.may_create_account(a, ANCESTRY[BJ]),
    "account:create for SH": lambda a: policy.may_create_account(a, ANCESTRY[SH]),
    "account:view/follow bank.service": lambda a: policy.may_follow_account(a, SERVICE, ANCESTRY[a.org_id]),
    "account:view bank.internal (staff)": lambda a: policy.may_view_account(a, INTERNAL, ANCESTRY[a.org_id]),
    "account:view SH branch account": lambda a: policy.may_view_account(a, SH_ACCOUNT, ANCESTRY[a.org_id]),
    "account:unfollow bank.service": lambda a: policy.may_unfollow_account(a, SERVICE),
    "account:unfollow bank.internal": lambda a: policy.may_unfollow_account(a, INTERNAL),
    "account:read notices, following": lambda a: policy.may_read_notices(a, True),
    "account:read notices, not following": lambda a: policy.may_read_notices(a, False),
    "account:publish on BJ account": lambda a: policy.may_manage_account(a, BJ_ACCOUNT),
    "account:publish on SH account": lambda a: policy.may_manage_account(a, SH_ACCOUNT),
    "account:list orgs to target": lambda a: policy.may_list_orgs(a),
    "notice:approve own (BJ account)": lambda a: policy.may_decide_notice(a, BJ_ACCOUNT, a),
    "notice:approve another's (BJ account)": lambda a: policy.may_decide_notice(a, BJ_ACCOUNT, HO_CHECKER),
    "notice:approve one by a disabled author": lambda a: policy.may_decide_notice(a, BJ_ACCOUNT, HO_GONE),
    "notice:reject one by a disabled author": lambda a: policy.may_decide_notice(a, BJ_ACCOUNT, HO_GONE, approve=False),
    "notice:approve one by a former admin (now staff)": lambda a: policy.may_decide_notice(a, BJ_ACCOUNT, CLERK),
    "notice:approve one whose author is gone": lambda a: policy.may_decide_notice(a, BJ_ACCOUNT, None),
    "user:create customer in HD": lambda a: policy.may_create_user(a, Role.CUSTOMER, ANCESTRY[HD]),
    "user:create customer in SH": lambda a: policy.may_create_user(a, Role.CUSTOMER, ANCESTRY[SH]),
    "user:create branch_admin in BJ": lambda a: policy.may_create_user(a, Role.BRANCH_ADMIN, ANCESTRY[BJ]),
    "alerts:use own inbox": lambda a: policy.may_use_inbox(a),
    "alerts:mute marketing": lambda a: policy.may_set_alert_preferences(a, ["marketing", "transaction"]),
    "alerts:mute security": lambda a: policy.may_set_alert_preferences(a, ["security"]),
    "alerts:dead letters list/replay": lambda a: policy.may_manage_alert_delivery(a),
    "desk:post as the system user": lambda a: policy.may_post_system(a, Membership("conv", "direct", a.id, "system", 5, 5)),
    "rm:list relationship managers": lambda a: policy.may_list_rms(a),
    "rm:view rm.wang's book": lambda a: policy.may_view_book(a, WANG, ANCESTRY[BJ]),
    "rm:view rm.chen's book (SH)": lambda a: policy.may_view_book(a, CHEN, ANCESTRY[SH]),
    "rm:declare availability": lambda a: policy.may_set_rm_status(a),
    "customer:card of c.zhang (HD, wang's)": lambda a: policy.may_view_customer_card(a, ZHANG, ANCESTRY[HD], False),
    "customer:card of c.zhou (SH) while serving": lambda a: policy.may_view_customer_card(a, ZHOU, ANCESTRY[SH], True),
    "rm:hand wang's book to rm.liu (BJ)": lambda a: policy.may_handover_book(a, WANG, LIU, ANCESTRY[BJ], ANCESTRY[BJ]),
    "rm:hand wang's book to rm.chen (SH)": lambda a: policy.may_handover_book(a, WANG, CHEN, ANCESTRY[BJ], ANCESTRY[SH]),
    "desk:open a service session": lambda a: policy.may_use_service(a),
    "desk:view li's session zhao serves": lambda a: policy.may_view_service_session(a, LI.id, ZHAO.id),
    "desk:transfer/close a session zhao serves": lambda a: policy.may_handle_service_session(a, ZHAO.id),
    "desk:transfer/close another agent's session": lambda a: policy.may_handle_service_session(a, "agent-other"),
    "desk:rate li's session": lambda a: policy.may_rate_service_session(a, LI.id),
    "desk:set own agent state (on the desk)": lambda a: policy.may_set_agent_state(a, True),
    "desk:figures and configuration": lambda a: policy.may_supervise_desk(a),
    # every principal of a decision is checked (issue 11, defect 6)
    "direct:open with rm.wang after he became staff": lambda a: policy.may_open_direct(a, WANG_AS_STAFF),
    "rm:see rm.wang as my RM": lambda a: policy.may_see_my_rm(a, WANG),
    "rm:see rm.wang as my RM after he became staff": lambda a: policy.may_see_my_rm(a, WANG_AS_STAFF),
    "rm:see rm.wang as my RM after he was disabled": lambda a: policy.may_see_my_rm(
        a, User("wang", "rm.wang", "Wang", Role.RM, BJ, disabled=True)
    ),
    "user:create customer in BJ with rm.wang (BJ)": lambda a: policy.may_create_user(a, Role.CUSTOMER, ANCESTRY[BJ], WANG, ANCESTRY[BJ]),
    "user:create customer in BJ with rm.chen (SH)": lambda a: policy.may_create_user(a, Role.CUSTOMER, ANCESTRY[BJ], CHEN, ANCESTRY[SH]),
    "user:create customer in BJ with a disabled RM": lambda a: policy.may_create_user(a, Role.CUSTOMER, ANCESTRY[BJ], GONE_RM, ANCESTRY[BJ]),
    "user:create customer in BJ with agent.zhao as RM": lambda a: policy.may_create_user(a, Role.CUSTOMER, ANCESTRY[BJ], ZHAO, ANCESTRY[HO]),
    "user:create staff in BJ with an RM": lambda a: policy.may_create_user(a, Role.STAFF, ANCESTRY[BJ], WANG, ANCESTRY[BJ]),
    "customer:reassign c.zhang (HD) -> agent.zhao (not an RM)": lambda a: policy.may_reassign_customer(
        a, ZHANG, ZHAO, ANCESTRY[HD], ANCESTRY[HO]
    ),
    "customer:reassign c.zhang (HD) -> a disabled RM (BJ)": lambda a: policy.may_reassign_customer(
        a, ZHANG, GONE_RM, ANCESTRY[HD], ANCESTRY[BJ]
    ),
    "customer:reassign rm.liu (not a customer) -> rm.wang": lambda a: policy.may_reassign_customer(a, LIU, WANG, ANCESTRY[BJ], ANCESTRY[BJ]),
    "rm:hand wang's book to a disabled RM (BJ)": lambda a: policy.may_handover_book(a, WANG, GONE_RM, ANCESTRY[BJ], ANCESTRY[BJ]),
    "rm:hand wang's book to agent.zhao (not an RM)": lambda a: policy.may_handover_book(a, WANG, ZHAO, ANCESTRY[BJ], ANCESTRY[HO]),
    "customer:card of c.li by rm.wang after he became staff": lambda a: policy.may_view_customer_card(
        WANG_AS_STAFF if a.id == WANG.id else a, LI, ANCESTRY[BJ], False
    ),
    "desk:transfer a session zhao serves to agent.qian": lambda a: policy.may_transfer_to_agent(a, ZHAO.id, QIAN),
    "desk:transfer a session zhao serves to a disabled agent": lambda a: policy.may_transfer_to_agent(a, ZHAO.id, GONE_AGENT),
    "desk:transfer a session zhao serves to rm.wang (not an agent)": lambda a: policy.may_transfer_to_agent(a, ZHAO.id, WANG),
    "desk:transfer a session zhao serves to nobody": lambda a: policy.may_transfer_to_agent(a, ZHAO.id, None),
    # admins see a book's metadata; its message text is the RM's (issue 11, defect 5)
    "rm:read message text on rm.wang's book": lambda a: policy.may_read_book_messages(a, WANG),
    "rm:read message text on rm.chen's book": lambda a: policy.may_read_book_messages(a, CHEN),
    # dual control of administrative accounts (issue 11, defect 8)
    "user:create compliance in HO": lambda a: policy.may_create_user(a, Role.COMPLIANCE, ANCESTRY[HO]),
    "user:create head_office_admin in HO": lambda a: policy.may_create_user(a, Role.HEAD_OFFICE_ADMIN, ANCESTRY[HO]),
    "user:request branch_admin in BJ": lambda a: policy.may_request_user(a, Role.BRANCH_ADMIN, ANCESTRY[BJ]),
    "user:role of c.zhang (HD) -> compliance": lambda a: policy.may_change_role(a, ZHANG, Role.COMPLIANCE, ANCESTRY[HD]),
    "user:request role of rm.wang (BJ) -> branch_admin": lambda a: policy.may_request_role_change(a, WANG, Role.BRANCH_ADMIN, ANCESTRY[BJ]),
    "admin:view a BJ request filed by ho.checker": lambda a: policy.may_view_admin_request(a, HO_CHECKER.id, ANCESTRY[BJ]),
    "admin:view an SH request filed by ho.checker": lambda a: policy.may_view_admin_request(a, HO_CHECKER.id, ANCESTRY[SH]),
    "admin:approve branch_admin in BJ filed by ho.checker": lambda a: policy.may_decide_admin_request(
        a, HO_CHECKER, Role.BRANCH_ADMIN, ANCESTRY[BJ], approve=True
    ),
    "admin:approve branch_admin in SH filed by ho.checker": lambda a: policy.may_decide_admin_request(
        a, HO_CHECKER, Role.BRANCH_ADMIN, ANCESTRY[SH], approve=True
    ),
    "admin:approve head_office_admin in HO filed by ho.checker": lambda a: policy.may_decide_admin_request(
        a, HO_CHECKER, Role.HEAD_OFFICE_ADMIN, ANCESTRY[HO], approve=True
    ),
    "admin:approve compliance in BJ filed by ho.checker": lambda a: policy.may_decide_admin_request(
        a, HO_CHECKER, Role.COMPLIANCE, ANCESTRY[BJ], approve=True
    ),
    "admin:approve my own request": lambda a: policy.may_decide_admin_request(a, a, Role.BRANCH_ADMIN, ANCESTRY[BJ], approve=True),
    "admin:withdraw my own request": lambda a: policy.may_decide_admin_request(a, a, Role.BRANCH_ADMIN, ANCESTRY[BJ], approve=False),
    "admin:approve my own promotion filed by ho.checker": lambda a: policy.may_decide_admin_request(
        a, HO_CHECKER, Role.HEAD_OFFICE_ADMIN, ANCESTRY[a.org_id], approve=True, target=a
    ),
    "admin:approve a BJ request of a disabled requester": lambda a: policy.may_decide_admin_request(
        a, HO_GONE, Role.BRANCH_ADMIN, ANCESTRY[BJ], approve=True
    ),
    "admin:reject a BJ request of a disabled requester": lambda a: policy.may_decide_admin_request(
        a, HO_GONE, Role.BRANCH_ADMIN, ANCESTRY[BJ], approve=False
    ),
}

A, F, N, I = "allow", "forbidden", "not_found", "invalid_request"
R, C = "approval_required", "conflict"
#                                            customer rm  agent staff br_admin ho_admin compliance
EXPECTED: dict[str, tuple[str, ...]] = {
    "direct:open with rm.wang":                  (A, F, A, A, A, A, A),
    "direct:open with rm.chen":                  (F, A, A, A, A, A, A),
    "direct:open with c.zhang (wang's book)":    (F, A, F, F, F, F, F),
    "direct:open with c.zhou (chen's book)":     (F, F, F, F, F, F, F),
    "direct:open with agent.zhao":               (F, A, F, A, A, A, A),
    "group:create with c.zhang":                 (F, A, F, F, F, F, F),
    "group:create with c.zhou":                  (F, F, F, F, F, F, F),
    "group:create with staff only":              (F, A, A, A, A, A, A),
    "conversation:send as member":               (A, A, A, A, A, A, A),
    "conversation:read as member":               (A, A, A, A, A, A, A),
    "conversation:send as non-member":           (N, N, N, N, N, N, N),
    "card:send as member":                       (F, A, A, F, F, F, F),
    "card:send as non-member":                   (N, N, N, N, N, N, N),
    "conversation:read others' membership":      (N, N, N, N, N, N, N),
    "conversation:list/sync own":                (A, A, A, A, A, A, A),
    "user:role of c.zhang (HD) -> staff":        (F, F, F, F, A, A, F),
    "user:role of rm.chen (SH) -> staff":        (F, F, F, F, N, A, F),
    "user:role of rm.wang (BJ) -> branch_admin": (F, F, F, F, F, R, F),
    "ws:issue ticket":                           (A, A, A, A, A, A, A),
    "customer:reassign c.zhang (HD) -> rm.wang (BJ)": (F, F, F, F, A, A, F),
    "customer:reassign c.zhang (HD) -> rm.chen (SH)": (F, F, F, F, N, A, F),
    "compliance:privileged read with a reason":      (F, F, F, F, F, F, A),
    "compliance:privileged read without a reason":   (F, F, F, F, F, F, I),
    "account:create for BJ":                     (F, F, F, F, A, A, F),
    "account:create for SH":                     (F, F, F, F, F, A, F),
    "account:view/follow bank.service":          (A, A, A, A, A, A, A),
    "account:view bank.internal (staff)":        (N, A, A, A, A, A, A),
    "account:view SH branch account":            (N, N, N, N, N, A, N),
    "account:unfollow bank.service":             (A, A, A, A, A, A, A),
    "account:unfollow bank.internal":            (A, F, F, F, F, F, F),
    "account:read notices, following":           (A, A, A, A, A, A, A),
    "account:read notices, not following":       (N, N, N, N, N, N, N),
    "account:publish on BJ account":             (F, F, F, F, A, A, F),
    "account:publish on SH account":             (F, F, F, F, F, A, F),
    "account:list orgs to target":               (F, F, F, F, A, A, F),
    "notice:approve own (BJ account)":           (F, F, F, F, F, F, F),
    "notice:approve another's (BJ account)":     (F, F, F, F, A, A, F),
    "notice:approve one by a disabled author":   (F, F, F, F, C, C, F),
    "notice:reject one by a disabled author":    (F, F, F, F, A, A, F),
    "notice:approve one by a former admin (now staff)": (F, F, F, F, C, C, F),
    "notice:approve one whose author is gone":   (F, F, F, F, C, C, F),
    "user:create customer in HD":                (F, F, F, F, A, A, F),
    "user:create customer in SH":                (F, F, F, F, F, A, F),
    "user:create branch_admin in BJ":            (F, F, F, F, F, R, F),
    "alerts:use own inbox":                      (A, A, A, A, A, A, A),
    "alerts:mute marketing":                     (A, A, A, A, A, A, A),
    "alerts:mute security":                      (I, I, I, I, I, I, I),
    "alerts:dead letters list/replay":           (F, F, F, F, F, A, F),
    "desk:post as the system user":              (F, F, F, F, F, F, F),
    "rm:list relationship managers":             (F, F, F, F, A, A, F),
    "rm:view rm.wang's book":                    (F, A, F, F, A, A, F),
    "rm:view rm.chen's book (SH)":               (F, F, F, F, N, A, F),
    "rm:declare availability":                   (F, A, F, F, F, F, F),
    "customer:card of c.zhang (HD, wang's)":     (N, A, N, N, A, A, N),
    "customer:card of c.zhou (SH) while serving": (N, N, A, N, N, A, N),
    "rm:hand wang's book to rm.liu (BJ)":        (F, F, F, F, A, A, F),
    "rm:hand wang's book to rm.chen (SH)":       (F, F, F, F, N, A, F),
    "desk:open a service session":               (A, F, F, F, F, F, F),
    "desk:view li's session zhao serves":        (A, N, A, N, N, A, N),
    "desk:transfer/close a session zhao serves": (N, N, A, N, N, A, N),
    "desk:transfer/close another agent's session": (N, N, N, N, N, A, N),
    "desk:rate li's session":                    (A, N, N, N, N, N, N),
    "desk:set own agent state (on the desk)":    (F, F, A, F, F, F, F),
    "desk:figures and configuration":            (F, F, F, F, F, A, F),
    "direct:open with rm.wang after he became staff":          (F, F, A, A, A, A, A),
    "rm:see rm.wang as my RM":                                 (A, N, N, N, N, N, N),
    "rm:see rm.wang as my RM after he became staff":           (N, N, N, N, N, N, N),
    "rm:see rm.wang as my RM after he was disabled":           (N, N, N, N, N, N, N),
    "user:create customer in BJ with rm.wang (BJ)":            (F, F, F, F, A, A, F),
    "user:create customer in BJ with rm.chen (SH)":            (F, F, F, F, I, A, F),
    "user:create customer in BJ with a disabled RM":           (F, F, F, F, I, I, F),
    "user:create customer in BJ with agent.zhao as RM":        (F, F, F, F, I, I, F),
    "user:create staff in BJ with an RM":                      (F, F, F, F, I, I, F),
    "customer:reassign c.zhang (HD) -> agent.zhao (not an RM)": (F, F, F, F, N, I, F),
    "customer:reassign c.zhang (HD) -> a disabled RM (BJ)":    (F, F, F, F, I, I, F),
    "customer:reassign rm.liu (not a customer) -> rm.wang":    (F, F, F, F, I, I, F),
    "rm:hand wang's book to a disabled RM (BJ)":               (F, F, F, F, I, I, F),
    "rm:hand wang's book to agent.zhao (not an RM)":           (F, F, F, F, N, I, F),
    "customer:card of c.li by rm.wang after he became staff":  (A, N, N, N, A, A, N),
    "desk:transfer a session zhao serves to agent.qian":       (N, N, A, N, N, A, N),
    "desk:transfer a session zhao serves to a disabled agent": (N, N, N, N, N, N, N),
    "desk:transfer a session zhao serves to rm.wang (not an agent)": (N, N, N, N, N, N, N),
    "desk:transfer a session zhao serves to nobody":           (N, N, N, N, N, N, N),
    "rm:read message text on rm.wang's book":                  (F, A, F, F, F, F, F),
    "rm:read message text on rm.chen's book":                  (F, F, F, F, F, F, F),
    "user:create compliance in HO":                            (F, F, F, F, F, R, F),
    "user:create head_office_admin in HO":                     (F, F, F, F, F, R, F),
    "user:request branch_admin in BJ":                         (F, F, F, F, F, A, F),
    "user:role of c.zhang (HD) -> compliance":                 (F, F, F, F, F, R, F),
    "user:request role of rm.wang (BJ) -> branch_admin":       (F, F, F, F, F, A, F),
    "admin:view a BJ request filed by ho.checker":             (F, F, F, F, A, A, F),
    "admin:view an SH request filed by ho.checker":            (F, F, F, F, N, A, F),
    "admin:approve branch_admin in BJ filed by ho.checker":    (F, F, F, F, A, A, F),
    "admin:approve branch_admin in SH filed by ho.checker":    (F, F, F, F, N, A, F),
    "admin:approve head_office_admin in HO filed by ho.checker": (F, F, F, F, N, A, F),
    "admin:approve compliance in BJ filed by ho.checker":      (F, F, F, F, F, A, F),
    "admin:approve my own request":                            (F, F, F, F, F, F, F),
    "admin:withdraw my own request":                           (F, F, F, F, A, A, F),
    "admin:approve my own promotion filed by ho.checker":      (F, F, F, F, F, F, F),
    "admin:approve a BJ request of a disabled requester":      (F, F, F, F, C, C, F),
    "admin:reject a BJ request of a disabled requester":       (F, F, F, F, A, A, F),
}  # fmt: skip


def test_targeting_of_branch_and_staff_accounts() -> None:
    """A branch account may target its own subtree only; a staff account staff only."""
    assert policy.may_target(BJ_ACCOUNT, [ANCESTRY[HD]], False).allowed
    assert policy.may_target(BJ_ACCOUNT, [ANCESTRY[BJ], ANCESTRY[HD]], False).allowed
    assert policy.may_target(BJ_ACCOUNT, [ANCESTRY[SH]], False).code == "forbidden"
    assert policy.may_target(BJ_ACCOUNT, [ANCESTRY[HO]], False).code == "forbidden"
    assert policy.may_target(SERVICE, [ANCESTRY[SH]], False).allowed
    assert policy.may_target(SERVICE, [], False).allowed
    assert policy.may_target(INTERNAL, [], False).code == "invalid_request"
    assert policy.may_target(INTERNAL, [], True).allowed

ROLES = list(ACTORS)
CELLS = [(action, role, EXPECTED[action][i]) for action in ACTIONS for i, role in enumerate(ROLES)]


def test_the_table_covers_every_role_and_action() -> None:
    assert set(EXPECTED) == set(ACTIONS)
    assert all(len(row) == len(ROLES) for row in EXPECTED.values())
    assert {r.value for r in Role} == set(ROLES)


@pytest.mark.parametrize(("action", "role", "expected"), CELLS, ids=[f"{r}|{a}" for a, r, _ in CELLS])
def test_cell(action: str, role: str, expected: str) -> None:
    decision = ACTIONS[action](ACTORS[role])
    got = "allow" if decision.allowed else decision.code
    assert got == expected, decision.reason


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_disabled_account_may_do_nothing(action: str) -> None:
    for actor in ACTORS.values():
        disabled = User(actor.id, actor.username, actor.display_name, actor.role, actor.org_id, actor.rm_id, disabled=True)
        assert not ACTIONS[action](disabled).allowed


def test_calling_systems_send_only_their_categories_to_active_users_and_read_only_their_alerts() -> None:
    from bankhub.models import AlertSystem

    core = AlertSystem("sys-core", "core-banking", "", ("transaction", "security"), 50.0, 100)
    off = AlertSystem("sys-off", "old-core", "", ("transaction",), 50.0, 100, disabled=True)
    gone = User("gone", "c.gone", "Gone", Role.CUSTOMER, BJ, disabled=True)
    assert policy.may_send_alert(core, "transaction", LI).allowed
    assert policy.may_send_alert(core, "security", ZHAO).allowed  # staff get security alerts too
    assert policy.may_send_alert(core, "marketing", LI).code == "forbidden"
    assert policy.may_send_alert(core, "transaction", None).code == "recipient_not_found"
    assert policy.may_send_alert(core, "transaction", gone).code == "recipient_not_found"
    assert policy.may_send_alert(off, "transaction", LI).code == "system_disabled"
    assert policy.may_read_alert_status(core, "sys-core").allowed
    assert policy.may_read_alert_status(core, "sys-other").code == "not_found"
    assert policy.may_read_alert_status(core, None).code == "not_found"
    assert policy.may_read_alert_status(off, "sys-off").code == "system_disabled"


def test_bank_systems_send_cards_of_their_categories_to_active_customers_with_an_rm() -> None:
    from bankhub.models import AlertSystem

    wealth = AlertSystem("sys-w", "wealth-platform", "", ("marketing",), 50.0, 100)
    off = AlertSystem("sys-off", "old", "", ("marketing",), 50.0, 100, disabled=True)
    gone = User("gone", "c.gone", "Gone", Role.CUSTOMER, BJ, rm_id="wang", disabled=True)
    assert policy.may_send_system_card(wealth, "offer", LI, WANG).allowed
    assert policy.may_send_system_card(wealth, "bill_reminder", LI, WANG).code == "forbidden"  # transaction
    assert policy.may_send_system_card(wealth, "appointment", LI, WANG).code == "forbidden"  # service
    assert policy.may_send_system_card(off, "offer", LI, WANG).code == "system_disabled"
    for nobody in (None, gone, WANG, ZHAO):  # no customer, disabled, staff
        assert policy.may_send_system_card(wealth, "offer", nobody, WANG).code == "recipient_not_found"
    assert policy.may_send_system_card(wealth, "offer", LI, CHEN).code == "conflict"  # not li's RM
    assert policy.may_send_system_card(wealth, "offer", LI, GONE_RM).code == "conflict"
    assert policy.may_send_system_card(wealth, "offer", LI, None).code == "conflict"


def test_only_the_hub_posts_system_notices_and_only_into_direct_and_service_conversations() -> None:
    from bankhub.desk.system import SYSTEM_USER_ID, system_user

    hub = system_user(HO)
    assert hub.id == SYSTEM_USER_ID and hub.disabled  # nobody signs in as it or opens a conversation with it
    for kind in ("direct", "service"):
        assert policy.may_post_system(hub, Membership("conv", kind, hub.id, "system", 3, 3)).allowed
    assert policy.may_post_system(hub, Membership("conv", "group", hub.id, "system", 3, 3)).code == "forbidden"
    assert policy.may_post_system(hub, None).code == "forbidden"  # no such conversation
    assert policy.may_post_system(hub, Membership("conv", "direct", hub.id, "member", 3, 3)).code == "forbidden"
    assert policy.may_open_direct(LI, hub).code == "forbidden"
    assert policy.may_view_customer_card(WANG, ZHAO, ANCESTRY[HO], False).code == "not_found"  # not a customer
    assert policy.may_set_agent_state(ZHAO, False).code == "not_found"  # an agent not on the desk yet
