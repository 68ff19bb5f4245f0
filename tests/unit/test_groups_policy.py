"""The policy of groups: every action checks the actor, the member it is about and the group."""

from __future__ import annotations

from bankhub import policy
from bankhub.desk.system import GROUP_EVENTS, SYSTEM_USER_ID, SystemEvent
from bankhub.models import Membership, Role, User

HO, BJ, HD, SH = "org-ho", "org-bj", "org-hd", "org-sh"
PATH = {HO: [HO], BJ: [BJ, HO], HD: [HD, BJ, HO], SH: [SH, HO]}

LI = User("li", "c.li", "Li", Role.CUSTOMER, BJ, rm_id="wang")
ZHANG = User("zhang", "c.zhang", "Zhang", Role.CUSTOMER, HD, rm_id="wang")
ZHOU = User("zhou", "c.zhou", "Zhou", Role.CUSTOMER, SH, rm_id="chen")
GONE = User("gone", "c.gone", "Gone", Role.CUSTOMER, BJ, disabled=True)
WANG = User("wang", "rm.wang", "Wang", Role.RM, BJ)
ZHAO = User("zhao", "agent.zhao", "Zhao", Role.AGENT, HO)
BR_ADMIN = User("bradmin", "br.admin", "BJ admin", Role.BRANCH_ADMIN, BJ)
HO_ADMIN = User("hoadmin", "ho.admin", "HO admin", Role.HEAD_OFFICE_ADMIN, HO)
SYSTEM = User(SYSTEM_USER_ID, "bankhub.system", "Bank", Role.STAFF, HO, disabled=True)


def m(user: User, role: str, conv: str = "g1", kind: str = "group") -> Membership:
    return Membership(conv, kind, user.id, role, 0, 0)


def invite(actor: User, role: str, invitee: User, **kw: object) -> policy.Decision:
    args: dict[str, object] = {
        "org_bound": False, "is_contact": True, "already_member": False, "members": 2, "max_members": 10, "staff": ()
    }
    args.update(kw)
    return policy.may_invite_to_group(actor, m(actor, role), invitee, **args)  # type: ignore[arg-type]


def test_customers_create_groups_with_customers_who_are_their_contacts() -> None:
    assert policy.may_create_group(LI, [ZHANG], contacts={"zhang"}).allowed
    assert policy.may_create_group(LI, [ZHANG]).code == "forbidden"  # not a contact
    assert policy.may_create_group(LI, [ZHANG, ZHOU], contacts={"zhang"}).code == "forbidden"  # every member checked
    assert policy.may_create_group(LI, [WANG], contacts={"wang"}).code == "forbidden"  # staff, even as a "contact"
    assert policy.may_create_group(LI, [GONE], contacts={"gone"}).code == "forbidden"
    assert policy.may_create_group(GONE, [ZHANG], contacts={"zhang"}).code == "forbidden"  # the actor too


def test_staff_create_groups_with_staff_and_an_rm_with_their_own_book() -> None:
    assert policy.may_create_group(WANG, [ZHAO, BR_ADMIN]).allowed
    assert policy.may_create_group(WANG, [LI]).allowed
    assert policy.may_create_group(WANG, [ZHOU]).code == "forbidden"
    assert policy.may_create_group(ZHAO, [LI], contacts={"li"}).code == "forbidden"  # contacts do not matter to staff


def test_the_size_cap_counts_the_creator() -> None:
    assert policy.may_create_group(LI, [ZHANG], contacts={"zhang"}, max_members=2).allowed
    assert policy.may_create_group(LI, [ZHANG, ZHOU], contacts={"zhang", "zhou"}, max_members=2).code == "group_full"
    assert policy.may_create_group(LI, [LI, ZHANG], contacts={"zhang"}, max_members=2).allowed  # myself once


def test_org_groups_are_created_by_administrators_of_the_org() -> None:
    assert policy.may_create_org_group(HO_ADMIN, PATH[SH]).allowed
    assert policy.may_create_org_group(BR_ADMIN, PATH[HD]).allowed
    assert policy.may_create_org_group(BR_ADMIN, PATH[BJ]).allowed
    assert policy.may_create_org_group(BR_ADMIN, PATH[SH]).code == "forbidden"
    assert policy.may_create_org_group(BR_ADMIN, PATH[HO]).code == "forbidden"
    assert policy.may_create_org_group(WANG, PATH[BJ]).code == "forbidden"
    assert policy.may_create_org_group(LI, PATH[BJ]).code == "forbidden"


def test_view_and_member_list_are_for_members_of_a_group() -> None:
    assert policy.may_view_group(LI, m(LI, "member")).allowed
    assert policy.may_view_group(LI, None).code == "not_found"
    assert policy.may_view_group(LI, m(ZHANG, "member")).code == "not_found"  # someone else's membership
    assert policy.may_view_group(LI, m(LI, "member", kind="direct")).code == "not_found"  # not a group
    assert policy.may_view_group(GONE, m(GONE, "member")).code == "forbidden"


def test_rename() -> None:
    assert policy.may_rename_group(LI, m(LI, "owner"), None).allowed
    assert policy.may_rename_group(LI, m(LI, "admin"), None).allowed
    assert policy.may_rename_group(LI, m(LI, "member"), None).code == "forbidden"
    assert policy.may_rename_group(LI, None, None).code == "not_found"
    # an org group: its administrators, member or not; not its members
    assert policy.may_rename_group(BR_ADMIN, None, PATH[HD]).allowed
    assert policy.may_rename_group(HO_ADMIN, None, PATH[SH]).allowed
    assert policy.may_rename_group(BR_ADMIN, None, PATH[SH]).code == "not_found"
    assert policy.may_rename_group(WANG, m(WANG, "member"), PATH[BJ]).code == "forbidden"


def test_invite_checks_the_actor_the_invitee_and_the_group() -> None:
    assert invite(LI, "owner", ZHANG).allowed
    assert invite(LI, "admin", ZHANG).allowed
    assert invite(LI, "member", ZHANG).code == "forbidden"
    assert policy.may_invite_to_group(LI, None, ZHANG, org_bound=False, is_contact=True, already_member=False, members=2, max_members=10, staff=()).code == "not_found"
    assert invite(LI, "owner", ZHANG, is_contact=False).code == "forbidden"
    assert invite(LI, "owner", WANG).code == "forbidden"  # a customer never invites staff
    assert invite(LI, "owner", GONE).code == "forbidden"
    assert invite(LI, "owner", ZHANG, already_member=True).code == "conflict"
    assert invite(LI, "owner", ZHANG, members=10).code == "group_full"
    assert invite(LI, "owner", ZHANG, members=9).allowed
    assert invite(LI, "owner", ZHANG, org_bound=True).code == "forbidden"
    assert invite(WANG, "owner", ZHAO, is_contact=False).allowed  # staff with staff
    assert invite(WANG, "owner", LI, is_contact=False).allowed  # an RM with their own book
    assert invite(WANG, "owner", ZHOU).code == "forbidden"
    assert invite(ZHAO, "owner", LI).code == "forbidden"


def test_a_customer_admin_brings_customers_only_to_staff_whose_book_holds_them() -> None:
    chen = User("chen", "rm.chen", "Chen", Role.RM, SH)
    # rm.wang's group, c.li its admin: c.zhang (rm.wang's book) may come in, c.zhou (rm.chen's) not,
    # though both are c.li's contacts
    assert invite(LI, "admin", ZHANG, staff=[WANG]).allowed
    denied = invite(LI, "admin", ZHOU, staff=[WANG])
    assert denied.code == "forbidden" and "c.zhou" in denied.reason
    assert invite(LI, "owner", ZHOU, staff=[WANG]).code == "forbidden"
    # every staff member is checked: one who is not the invitee's RM refuses it
    assert invite(LI, "admin", ZHANG, staff=[WANG, ZHAO]).code == "forbidden"
    assert invite(LI, "admin", ZHANG, staff=[WANG, chen]).code == "forbidden"
    assert invite(LI, "admin", ZHOU, staff=[chen]).allowed
    # the contact rule still comes first
    assert invite(LI, "admin", ZHANG, staff=[WANG], is_contact=False).code == "forbidden"
    # a group of customers only: contacts, as before
    assert invite(LI, "admin", ZHOU, staff=[]).allowed
    # staff who invite vouch for the invitee themselves, as at creation
    assert invite(WANG, "owner", ZHANG, staff=[WANG, ZHAO], is_contact=False).allowed
    assert invite(WANG, "owner", ZHOU, staff=[WANG]).code == "forbidden"


def test_remove() -> None:
    assert policy.may_remove_from_group(LI, m(LI, "owner"), m(ZHANG, "admin"), org_bound=False).allowed
    assert policy.may_remove_from_group(LI, m(LI, "owner"), m(ZHANG, "member"), org_bound=False).allowed
    assert policy.may_remove_from_group(LI, m(LI, "admin"), m(ZHANG, "member"), org_bound=False).allowed
    assert policy.may_remove_from_group(LI, m(LI, "admin"), m(ZHANG, "admin"), org_bound=False).code == "forbidden"
    assert policy.may_remove_from_group(LI, m(LI, "admin"), m(ZHANG, "owner"), org_bound=False).code == "forbidden"
    assert policy.may_remove_from_group(LI, m(LI, "member"), m(ZHANG, "member"), org_bound=False).code == "forbidden"
    assert policy.may_remove_from_group(LI, m(LI, "owner"), None, org_bound=False).code == "not_found"
    assert policy.may_remove_from_group(LI, m(LI, "owner"), m(ZHANG, "member", conv="g2"), org_bound=False).code == "not_found"
    assert policy.may_remove_from_group(LI, m(LI, "owner"), m(LI, "owner"), org_bound=False).code == "invalid_request"
    assert policy.may_remove_from_group(LI, None, m(ZHANG, "member"), org_bound=False).code == "not_found"
    assert policy.may_remove_from_group(BR_ADMIN, m(BR_ADMIN, "member"), m(WANG, "member"), org_bound=True).code == "forbidden"
    assert policy.may_remove_from_group(GONE, m(GONE, "owner"), m(ZHANG, "member"), org_bound=False).code == "forbidden"


def test_leave() -> None:
    assert policy.may_leave_group(LI, m(LI, "owner"), org_bound=False).allowed
    assert policy.may_leave_group(LI, m(LI, "member"), org_bound=False).allowed
    assert policy.may_leave_group(LI, None, org_bound=False).code == "not_found"
    assert policy.may_leave_group(LI, m(LI, "member", kind="service"), org_bound=False).code == "not_found"
    assert policy.may_leave_group(WANG, m(WANG, "member"), org_bound=True).code == "forbidden"


def test_roles_are_changed_by_the_owner_only() -> None:
    def set_role(actor_role: str, target: User, target_role: str, role: str, **kw: bool) -> policy.Decision:
        return policy.may_set_group_role(LI, m(LI, actor_role), m(target, target_role), target, role, org_bound=kw.get("org_bound", False))

    assert set_role("owner", ZHANG, "member", "admin").allowed
    assert set_role("owner", ZHANG, "admin", "member").allowed
    assert set_role("owner", ZHANG, "member", "owner").allowed
    assert set_role("admin", ZHANG, "member", "admin").code == "forbidden"
    assert set_role("member", ZHANG, "member", "admin").code == "forbidden"
    assert set_role("owner", ZHANG, "member", "king").code == "invalid_request"
    assert set_role("owner", ZHANG, "member", "admin", org_bound=True).code == "forbidden"
    assert set_role("owner", GONE, "member", "owner").code == "forbidden"  # a new owner is active
    assert set_role("owner", LI, "owner", "admin").code == "invalid_request"
    assert policy.may_set_group_role(LI, m(LI, "owner"), None, ZHANG, "admin", org_bound=False).code == "not_found"
    # the target membership must be of this group and of this user
    assert policy.may_set_group_role(LI, m(LI, "owner"), m(ZHANG, "member", conv="g2"), ZHANG, "admin", org_bound=False).code == "not_found"
    assert policy.may_set_group_role(LI, m(LI, "owner"), m(ZHOU, "member"), ZHANG, "admin", org_bound=False).code == "not_found"


def test_the_hub_posts_group_events_into_groups_and_nothing_else() -> None:
    system = Membership("g1", "group", SYSTEM_USER_ID, "system", 3, 3)
    for event in GROUP_EVENTS:
        assert policy.may_post_system(SYSTEM, system, event).allowed
    assert policy.may_post_system(SYSTEM, system, SystemEvent.BOT_ANSWER).code == "forbidden"
    assert policy.may_post_system(SYSTEM, system).code == "forbidden"
    assert policy.may_post_system(LI, Membership("g1", "group", LI.id, "member", 3, 3), SystemEvent.GROUP_RENAMED).code == "forbidden"
    assert policy.may_post_system(SYSTEM, Membership("g1", "direct", SYSTEM_USER_ID, "system", 3, 3), SystemEvent.GROUP_RENAMED).allowed


def test_the_group_operations_name_their_problem_codes() -> None:
    from bankhub.http.openapi import openapi_document

    paths = openapi_document()["paths"]
    codes = {400: "invalid_request", 403: "forbidden", 404: "not_found"}
    ops = [(p, method, o) for p, item in paths.items() if p.startswith(("/v1/groups", "/v1/org-groups")) for method, o in item.items()]
    assert len(ops) == 9
    for path, method, o in ops:
        for status, text in o["responses"].items():
            if int(status) in codes:
                assert f"`{codes[int(status)]}`" in text["description"], (method, path, status)
    invite_409 = paths["/v1/groups/{conversation_id}/members"]["post"]["responses"]["409"]["description"]
    assert "`conflict`" in invite_409 and "`group_full`" in invite_409
    assert "`group_full`" in paths["/v1/groups"]["post"]["responses"]["409"]["description"]
    # the old endpoint creates groups too: it answers group_full as well
    assert "`group_full`" in paths["/v1/conversations"]["post"]["responses"]["409"]["description"]
    assert "`not_found`" in paths["/v1/org-groups"]["post"]["responses"]["404"]["description"]
