"""Demo data for ``bankhub dev``: a head office, two branches, staff and customers.

Seeded once (skipped when any user exists). Every demo password is ``bankhub-demo``.
"""

from __future__ import annotations


from .actions import audit
from .desk.hours import BusinessHours, parse_hhmm
from .models import Role
from .passwords import hash_password
from .policy import DUAL_CONTROL_ROLES
from .storage import ConversationStore, Database, UserStore
from .storage.accounts import AccountStore
from .storage.contacts import ContactStore
from .storage.db import Conn
from .storage.rm import RmStore
from .storage.service import ServiceStore
from .storage.supervision import SupervisionStore
from .compliance.supervision import DEMO_RULES as DEMO_SUPERVISION_RULES

__all__ = ["DEMO_PASSWORD", "DEMO_USERS", "DEMO_ACCOUNTS", "DEMO_WIDGET_ORIGIN", "seed_demo"]

DEMO_PASSWORD = "bankhub-demo"

# the demo service-widget partner's page origin (`bankhub dev` registers partner demo-shop for
# it; serve a page there, e.g. `python -m http.server 8765`, as docs/widget.md shows)
DEMO_WIDGET_ORIGIN = "http://127.0.0.1:8765"

# username, display name, role, org code, RM username
DEMO_USERS: list[tuple[str, str, Role, str, str | None]] = [
    ("ho.admin", "Head Office Admin", Role.HEAD_OFFICE_ADMIN, "HO", None),
    ("co.sun", "Sun Compliance", Role.COMPLIANCE, "HO", None),
    ("co.qian", "Qian Compliance", Role.COMPLIANCE, "HO", None),  # a second officer: dual control
    ("agent.zhao", "Zhao (Service Desk)", Role.AGENT, "HO", None),
    ("br.admin", "Beijing Branch Admin", Role.BRANCH_ADMIN, "BJ", None),
    ("rm.wang", "Wang (Relationship Manager)", Role.RM, "BJ", None),
    ("rm.chen", "Chen (Relationship Manager)", Role.RM, "SH", None),
    ("c.li", "Li Lei", Role.CUSTOMER, "BJ", "rm.wang"),
    ("c.zhang", "Zhang Wei", Role.CUSTOMER, "BJ-HD", "rm.wang"),
    ("c.zhou", "Zhou Min", Role.CUSTOMER, "SH", "rm.chen"),
]

# customers' segment and tags (for targeted notices)
DEMO_PROFILES: dict[str, tuple[str, list[str]]] = {
    "c.li": ("wealth", ["card_holder", "wealth_client"]),
    "c.zhang": ("mass", ["card_holder"]),
    "c.zhou": ("mass", ["loan_client"]),
}

# handle, name, audience, owner org code, default for new users, description
DEMO_ACCOUNTS: list[tuple[str, str, str, str, bool, str]] = [
    ("bank.service", "Bank Service", "customer", "HO", True, "Service notices from head office"),
    ("bank.cards", "Credit Cards", "customer", "HO", True, "Card offers, statements and security tips"),
    ("bank.wealth", "Wealth Management", "customer", "HO", True, "Products, market views and events"),
    ("bank.internal", "Internal Notices", "staff", "HO", True, "Head-office notices to all staff"),
    ("bj.branch", "Beijing Branch", "customer", "BJ", False, "News from the Beijing branch"),
    ("sh.branch", "Shanghai Branch", "customer", "SH", False, "News from the Shanghai branch"),
]


async def seed_demo(dsn: str) -> bool:
    """Create the demo org tree, users and a group. Returns False if data already existed."""
    db = Database(dsn, min_size=1, max_size=2)
    await db.open()
    try:
        users = UserStore(db)
        if await users.count() > 0:
            return False
        hashes = {u[0]: hash_password(DEMO_PASSWORD) for u in DEMO_USERS}  # slow by design: outside the transaction
        async with db.transaction("seed_demo") as conn:
            await conn.execute("LOCK TABLE users IN EXCLUSIVE MODE")  # two nodes seeding at once: one wins
            if await conn.fetchval("SELECT count(*) FROM users"):
                return False
            orgs = await _seed_orgs(users, conn)
            ids: dict[str, str] = {}
            for username, display, role, org, rm in DEMO_USERS:
                user = await users.create_user(
                    conn,
                    username=username,
                    display_name=display,
                    role=role,
                    org_id=orgs[org],
                    password_hash=hashes[username],
                    rm_id=ids[rm] if rm else None,
                    segment=DEMO_PROFILES.get(username, (None, []))[0],
                    tags=DEMO_PROFILES.get(username, (None, []))[1],
                )
                ids[username] = user.id
                if role in DUAL_CONTROL_ROLES:
                    # the operator's bootstrap is the one direct way to an administrative account: audited
                    await audit.record(
                        db,
                        actor=audit.SYSTEM,
                        action=audit.USER_BOOTSTRAPPED,
                        target=user,
                        details={"role": role.value, "org": org, "source": "demo seed"},
                        conn=conn,
                    )
            await _seed_accounts(conn, db, orgs, ids)
            await _seed_service_desk(conn, db, ids)
            await SupervisionStore.seed_txn(conn, DEMO_SUPERVISION_RULES)  # guarantees of returns, off-channel
            for username, phone in DEMO_PHONES.items():  # contacts: add by phone number
                await ContactStore.set_phone(conn, ids[username], phone)
        await ConversationStore(db).create_group(ids["rm.wang"], "Wang's wealth club", [ids["c.li"], ids["c.zhang"]])
        return True
    finally:
        await db.close()


async def _seed_accounts(conn: Conn, db: Database, orgs: dict[str, str], ids: dict[str, str]) -> None:
    """The bank's official accounts; every user follows the defaults of their audience, and
    the demo customers their own branch's account."""
    accounts = AccountStore(db)
    by_handle: dict[str, str] = {}
    for handle, name, audience, org, default, description in DEMO_ACCOUNTS:
        account = await accounts.create(
            handle=handle,
            name=name,
            description=description,
            owner_org_id=orgs[org],
            audience=audience,
            is_default=default,
            requires_approval=False,
            created_by=ids["ho.admin"],
            conn=conn,
        )
        assert account is not None
        by_handle[handle] = account.id
    for username, _, role, _, _ in DEMO_USERS:
        await AccountStore.follow_defaults(conn, ids[username], role)
    for username, handle in (("c.li", "bj.branch"), ("c.zhang", "bj.branch"), ("c.zhou", "sh.branch")):
        await AccountStore.follow(conn, by_handle[handle], ids[username])


# the demo customers' phone numbers (E.164; "13800000001" finds c.li), for adding a contact by phone
DEMO_PHONES = {"c.li": "+8613800000001", "c.zhang": "+8613800000002", "c.zhou": "+8613800000003"}

# customers' account class (I: full-function; II, III: limited electronic accounts)
DEMO_ACCOUNT_CLASSES = {"c.li": "I", "c.zhang": "II", "c.zhou": "I"}

# code, name, ISO weekdays, open, close: the service desk's queues (hours in Asia/Shanghai)
DEMO_QUEUES: list[tuple[str, str, tuple[int, ...], str, str]] = [
    ("general", "General enquiries", (1, 2, 3, 4, 5, 6, 7), "00:00", "24:00"),
    ("cards", "Cards", (1, 2, 3, 4, 5, 6, 7), "00:00", "24:00"),
    ("loans", "Loans", (1, 2, 3, 4, 5), "09:00", "18:00"),
]


async def _seed_service_desk(conn: Conn, db: Database, ids: dict[str, str]) -> None:
    """Account classes, the desk's queues, and agent.zhao on every queue (capacity 3, away
    until they set themselves available)."""
    for username, account_class in DEMO_ACCOUNT_CLASSES.items():
        await RmStore.set_account_class(conn, ids[username], account_class)
    desk = ServiceStore(db)
    for code, name, days, opens, closes in DEMO_QUEUES:
        await desk.put_queue(code, name, BusinessHours("Asia/Shanghai", days, parse_hhmm(opens), parse_hhmm(closes)), "", conn)
    await desk.put_agent(ids["agent.zhao"], 3, [q[0] for q in DEMO_QUEUES], conn)


async def _seed_orgs(users: UserStore, conn: Conn) -> dict[str, str]:
    ho = await users.create_org(conn, kind="head_office", code="HO", name="Head Office", parent_id=None)
    bj = await users.create_org(conn, kind="branch", code="BJ", name="Beijing Branch", parent_id=ho)
    sh = await users.create_org(conn, kind="branch", code="SH", name="Shanghai Branch", parent_id=ho)
    hd = await users.create_org(conn, kind="sub_branch", code="BJ-HD", name="Haidian Sub-branch", parent_id=bj)
    return {"HO": ho, "BJ": bj, "SH": sh, "BJ-HD": hd}
