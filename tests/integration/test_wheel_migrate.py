"""A hub installed from its wheel migrates an empty database: the SQL deltas ship inside
the package (``bankhub/storage/schema/``), not beside a source checkout.

The wheel is built offline from a copy of the source tree (``pip wheel --no-deps
--no-build-isolation``: the build backend of this environment, nothing downloaded), installed
with ``--no-deps`` into a fresh venv, and run as that venv's ``bankhub migrate`` from a
directory with no ``schema/`` beside it. The fresh venv sees this environment's
dependencies (asyncpg, msgspec, ...) through a ``.pth`` line naming its site-packages
directory; ``.pth`` files inside that directory are not processed, so the repository's
editable ``bankhub`` stays invisible there, which the test checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import asyncpg

from bankhub.storage.migrate import load_deltas

from ..support.postgres import TEMPLATE, PostgresForTests

ROOT = Path(__file__).resolve().parents[2]
_NOT_SOURCE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".mypy_cache", "node_modules")


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def _clean_env() -> dict[str, str]:
    """This environment without anything that would point the fresh venv at the source tree
    or at a database by default."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BANKHUB_", "PYTHON", "VIRTUAL_ENV", "PIP_"))}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONNOUSERSITE="1")
    return env


def _build_wheel(work: Path, env: dict[str, str]) -> Path:
    """The wheel of a clean copy of the source tree (no stale ``build/`` of the checkout)."""
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "server", src / "server", ignore=_NOT_SOURCE)
    shutil.copytree(ROOT / "clients" / "python", src / "clients" / "python", ignore=_NOT_SOURCE)
    wheels = work / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels), str(src)],
        work,
        env,
    )
    (wheel,) = wheels.glob("bankhub-*.whl")
    return wheel


def _fresh_venv(work: Path, wheel: Path, env: dict[str, str]) -> Path:
    """A new venv holding only the wheel; this environment's dependencies importable through a ``.pth`` line."""
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work, env)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], work, env)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work, env).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    return venv


async def _tables(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {r["tablename"] for r in rows}


async def test_the_installed_wheel_migrates_an_empty_database(postgres: PostgresForTests, tmp_path: Path) -> None:
    env = _clean_env()
    wheel = _build_wheel(tmp_path, env)
    venv = _fresh_venv(tmp_path, wheel, env)
    elsewhere = tmp_path / "elsewhere"  # the cwd: no schema/ here or above it
    elsewhere.mkdir()

    found = _run([str(venv / "bin" / "python"), "-c", "import bankhub; print(bankhub.__file__)"], elsewhere, env).stdout.strip()
    assert Path(found).is_relative_to(venv), f"bankhub imported from {found}, not from the wheel installed in {venv}"

    admin = await asyncpg.connect(postgres.server.dsn("postgres"))
    try:
        await admin.execute("DROP DATABASE IF EXISTS wheel_migrate WITH (FORCE)")
        await admin.execute("CREATE DATABASE wheel_migrate")  # empty: not from the migrated template
    finally:
        await admin.close()
    dsn = postgres.server.dsn("wheel_migrate")
    try:
        assert await _tables(dsn) == set()
        migrate = [str(venv / "bin" / "bankhub"), "migrate", "--database-url", dsn]
        versions = [d.version for d in load_deltas()]

        first = _run(migrate, elsewhere, env).stdout
        assert first.splitlines()[0] == f"applied {len(versions)} delta(s)"
        # the same tables as a database migrated from the source tree (the tests' template)
        assert await _tables(dsn) == await _tables(postgres.server.dsn(TEMPLATE))
        conn = await asyncpg.connect(dsn)
        try:
            assert [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")] == versions
        finally:
            await conn.close()

        second = _run(migrate, elsewhere, env).stdout
        assert second.strip() == "applied 0 delta(s)"
    finally:
        admin = await asyncpg.connect(postgres.server.dsn("postgres"))
        try:
            await admin.execute("DROP DATABASE IF EXISTS wheel_migrate WITH (FORCE)")
        finally:
            await admin.close()
