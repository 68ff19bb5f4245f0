"""Demo data for ``bankhub dev``: a head office, two branches, staff and customers.

Seeded once (skipped when any user exists). Every demo password is ``bankhub-demo``.
"""

from __future__ import annotations


from .models import Role
from .passwords import hash_password
from .storage import ConversationStore, Database, UserStore
from .storage.db import Conn

__all__ = ["DEMO_PASSWORD", "DEMO_USERS", "seed_demo"]

DEMO_PASSWORD = "bankhub-demo"

# username, display name, role, org code, RM username
DEMO_USERS: list[tuple[str, str, Role, str, str | None]] = [
    ("ho.admin", "Head Office Admin", Role.HEAD_OFFICE_ADMIN, "HO", None),
    ("co.sun", "Sun Compliance", Role.COMPLIANCE, "HO", None),
    ("agent.zhao", "Zhao (Service Desk)", Role.AGENT, "HO", None),
    ("br.admin", "Beijing Branch Admin", Role.BRANCH_ADMIN, "BJ", None),
    ("rm.wang", "Wang (Relationship Manager)", Role.RM, "BJ", None),
    ("rm.chen", "Chen (Relationship Manager)", Role.RM, "SH", None),
    ("c.li", "Li Lei", Role.CUSTOMER, "BJ", "rm.wang"),
    ("c.zhang", "Zhang Wei", Role.CUSTOMER, "BJ-HD", "rm.wang"),
    ("c.zhou", "Zhou Min", Role.CUSTOMER, "SH", "rm.chen"),
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
                )
                ids[username] = user.id
        await ConversationStore(db).create_group(ids["rm.wang"], "Wang's wealth club", [ids["c.li"], ids["c.zhang"]])
        return True
    finally:
        await db.close()


async def _seed_orgs(users: UserStore, conn: Conn) -> dict[str, str]:
    ho = await users.create_org(conn, kind="head_office", code="HO", name="Head Office", parent_id=None)
    bj = await users.create_org(conn, kind="branch", code="BJ", name="Beijing Branch", parent_id=ho)
    sh = await users.create_org(conn, kind="branch", code="SH", name="Shanghai Branch", parent_id=ho)
    hd = await users.create_org(conn, kind="sub_branch", code="BJ-HD", name="Haidian Sub-branch", parent_id=bj)
    return {"HO": ho, "BJ": bj, "SH": sh, "BJ-HD": hd}
