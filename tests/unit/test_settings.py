"""Settings: one typed declaration per tunable, and the documents generated from it.

Every field of :class:`Settings` carries its variable, doc and bounds; ``from_env`` parses
each type and refuses a bad value with one message naming the variable (never echoing a
secret); the sans-I/O ``SessionLimits`` is built from it; and the settings tables in README
and docs are exactly what ``bankhub settings`` prints.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

from bankhub.protocol.session import SessionLimits
from bankhub.settings import ENV_PREFIX, SESSION_LIMITS, Setting, Settings, SettingsError, settings_table, specs

ROOT = Path(__file__).resolve().parents[2]
BANKHUB = Path(sys.executable).with_name("bankhub")

# variables the docs name that are no hub setting: the `notify` command's secret, and the
# test suite's own switches
NOT_SETTINGS = {"BANKHUB_SYSTEM_SECRET", "BANKHUB_README_SCREENSHOTS", "BANKHUB_WEB_ARTIFACTS"}

HINTS = typing.get_type_hints(Settings)
FIELDS = dataclasses.fields(Settings)
SUPPORTED = {str, int, float, str | None, tuple[str, ...]}


def _spec(name: str) -> Setting:
    spec: Setting = next(f for f in FIELDS if f.name == name).metadata["setting"]
    return spec


def _default(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def _other_value(f: dataclasses.Field[Any]) -> tuple[str, Any]:
    """A valid value other than the default, as the variable's text and as parsed."""
    spec: Setting = f.metadata["setting"]
    default, tp = _default(f), HINTS[f.name]
    if spec.choices:
        choice = next(c for c in spec.choices if c != default)
        return choice.upper() if spec.parse is str.lower else choice, choice
    if tp is int:
        value = default + 1 if spec.le is None or default + 1 <= spec.le else default - 1
        return f" {value} ", value
    if tp is float:
        value = default * 2 + 1 if spec.le is None else (default + spec.le) / 2
        if value == default:  # the default is the upper bound (a ratio of 1.0)
            value = (default + (spec.ge or 0)) / 2
        return repr(value), value
    if tp is str and spec.parse is not None:  # a URL the parser checks
        return " https://collector.example:4318/v1/traces ", "https://collector.example:4318/v1/traces"
    if tp == tuple[str, ...]:
        return " https://a.example/, ,https://b.example ", ("https://a.example", "https://b.example")
    return "some text", "some text"


# --- the declaration ------------------------------------------------------------------------


def test_every_field_declares_its_variable_doc_and_a_parseable_type() -> None:
    assert len(FIELDS) >= 40
    envs = [f.metadata["setting"].env for f in FIELDS]
    assert len(set(envs)) == len(envs)
    for f in FIELDS:
        spec = f.metadata.get("setting")
        assert isinstance(spec, Setting), f"{f.name} is not declared with setting(...)"
        assert spec.env == ENV_PREFIX + f.name.upper(), f.name
        assert len(spec.doc) > 10 and "|" not in spec.doc and "\n" not in spec.doc, f.name
        assert HINTS[f.name] in SUPPORTED or spec.parse is not None, f.name
        assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING, f.name


def test_settings_are_frozen_and_varied_with_replace() -> None:
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 1  # type: ignore[misc]
    assert dataclasses.replace(s, port=9000).port == 9000 and s.port == 8000


def test_the_tunables_that_lived_outside_settings_are_settings_now() -> None:
    env = {
        "BANKHUB_WS_TICKET_TTL_SECONDS": "45",
        "BANKHUB_SESSION_RECHECK_SECONDS": "7.5",
        "BANKHUB_NOTICE_STATS_SECONDS": "3",
        "BANKHUB_COMMIT_BATCH_MAX": "64",
        "BANKHUB_ALERT_WORKER_SECONDS": "0.25",
        "BANKHUB_DESK_SWEEP_SECONDS": "2",
        "BANKHUB_ALERT_SWEEP_SECONDS": "20",
        "BANKHUB_WS_PING_SECONDS": "15",
    }
    s = Settings.from_env(env)
    assert (s.ws_ticket_ttl_seconds, s.session_recheck_seconds, s.notice_stats_seconds, s.commit_batch_max) == (45, 7.5, 3.0, 64)
    assert (s.alert_worker_seconds, s.desk_sweep_seconds, s.alert_sweep_seconds, s.ws_ping_seconds) == (0.25, 2.0, 20.0, 15.0)


# --- from_env -------------------------------------------------------------------------------


def test_from_env_without_variables_is_the_defaults() -> None:
    s = Settings.from_env({})
    for f in FIELDS:
        if f.name != "node_name":  # host-pid, made on each call
            assert getattr(s, f.name) == _default(f), f.name
    # empty counts as unset
    assert Settings.from_env({f.metadata["setting"].env: "" for f in FIELDS}).port == 8000


@pytest.mark.parametrize("name", [f.name for f in FIELDS])
def test_from_env_parses_each_field_by_its_type(name: str) -> None:
    f = next(f for f in FIELDS if f.name == name)
    text, expected = _other_value(f)
    assert expected != _default(f)
    got = getattr(Settings.from_env({_spec(name).env: text}), name)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("env", "text", "message"),
    [
        ("BANKHUB_PORT", "eighty", "BANKHUB_PORT must be a whole number, got 'eighty'"),
        ("BANKHUB_PORT", "80.5", "BANKHUB_PORT must be a whole number, got '80.5'"),
        ("BANKHUB_PORT", "70000", "BANKHUB_PORT (port) must be at most 65535, got 70000"),
        ("BANKHUB_DB_POOL_SIZE", "0", "BANKHUB_DB_POOL_SIZE (db_pool_size) must be at least 1, got 0"),
        ("BANKHUB_SESSION_TTL_HOURS", "soon", "BANKHUB_SESSION_TTL_HOURS must be a number, got 'soon'"),
        ("BANKHUB_SESSION_TTL_HOURS", "0", "BANKHUB_SESSION_TTL_HOURS (session_ttl_hours) must be greater than 0, got 0.0"),
        ("BANKHUB_WS_FRAMES_PER_SECOND", "nan", "BANKHUB_WS_FRAMES_PER_SECOND must be a finite number, got 'nan'"),
        ("BANKHUB_WS_IDLE_TIMEOUT_SECONDS", "inf", "BANKHUB_WS_IDLE_TIMEOUT_SECONDS must be a finite number, got 'inf'"),
        ("BANKHUB_WS_MAX_TEXT_CHARS", "4001", "BANKHUB_WS_MAX_TEXT_CHARS (ws_max_text_chars) must be at most 4000, got 4001"),
        ("BANKHUB_WS_MAX_SYNC_LIMIT", "501", "BANKHUB_WS_MAX_SYNC_LIMIT (ws_max_sync_limit) must be at most 500, got 501"),
        ("BANKHUB_MAX_SOCKETS_PER_IP", "-1", "BANKHUB_MAX_SOCKETS_PER_IP (max_sockets_per_ip) must be at least 1, got -1"),
        ("BANKHUB_LOG_LEVEL", "loud", "BANKHUB_LOG_LEVEL (log_level) must be one of critical, error, warning, info, debug, trace, got 'loud'"),
    ],
)
def test_from_env_refuses_a_bad_value_naming_the_variable(env: str, text: str, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({env: text})
    assert str(err.value) == message


def test_every_numeric_bound_is_enforced_on_construction_too() -> None:
    for f in FIELDS:
        spec: Setting = f.metadata["setting"]
        for bound, outside in ((spec.gt, spec.gt), (spec.ge, None if spec.ge is None else spec.ge - 1), (spec.le, None if spec.le is None else spec.le + 1)):
            if bound is None or outside is None:
                continue
            value = int(outside) if HINTS[f.name] is int else float(outside)
            with pytest.raises(SettingsError, match=re.escape(spec.env)):
                Settings(**{f.name: value})


def test_secrets_stay_out_of_repr_and_errors() -> None:
    secret_fields = {f.name for f in FIELDS if f.metadata["setting"].secret}
    assert {"database_url", "cluster_key", "alert_webhook_secret"} <= secret_fields
    s = Settings(database_url="postgresql://u:pw-123@db/x", cluster_key="key-456", alert_webhook_secret="hook-789")
    shown = repr(s)
    assert "pw-123" not in shown and "key-456" not in shown and "hook-789" not in shown
    assert "port=8000" in shown


def test_validate_keeps_what_a_production_node_needs() -> None:
    with pytest.raises(ValueError, match="BANKHUB_DATABASE_URL is required"):
        Settings().validate()
    with pytest.raises(ValueError, match="BANKHUB_CLUSTER_KEY is required with BANKHUB_REDIS_URL"):
        Settings(database_url="postgresql:///x", key_file="k", redis_url="redis://r").validate()
    with pytest.raises(ValueError, match="go together"):
        Settings(database_url="postgresql:///x", key_file="k", tls_cert="c").validate()
    with pytest.raises(ValueError, match="no key provider"):
        Settings(database_url="postgresql:///x").validate()
    Settings(database_url="postgresql:///x", key_file="k").validate()


def test_every_setting_is_read_by_the_hub() -> None:
    """A variable the README lists does something: its field is read outside settings.py."""
    server = ROOT / "server" / "bankhub"
    source = "\n".join(p.read_text() for p in server.rglob("*.py") if p != server / "settings.py")
    unread = [
        f.name for f in FIELDS if f.name not in SESSION_LIMITS.values() and not re.search(rf"\.{f.name}\b", source)
    ]
    assert not unread


# --- the session limits ---------------------------------------------------------------------


def test_session_limits_come_from_settings_and_default_alike() -> None:
    assert set(SESSION_LIMITS) == {f.name for f in dataclasses.fields(SessionLimits)}
    assert set(SESSION_LIMITS.values()) <= {f.name for f in FIELDS}
    assert Settings().session_limits() == SessionLimits()
    limits = Settings.from_env(
        {"BANKHUB_WS_FRAMES_PER_SECOND": "7", "BANKHUB_WS_MAX_STRIKES": "3", "BANKHUB_WS_IDLE_TIMEOUT_SECONDS": "30"}
    ).session_limits()
    assert (limits.frames_per_second, limits.max_strikes, limits.idle_timeout) == (7.0, 3, 30.0)
    assert limits.as_limits().frames_per_second == 7.0  # what hello announces


# --- the documents --------------------------------------------------------------------------

_BLOCK = re.compile(
    r"<!-- settings:begin \(generated by `bankhub settings(?: --only (?P<only>\w+))?`[^>]*-->\n(?P<table>.*?)<!-- settings:end -->",
    re.S,
)


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_settings_tables_in_readme_and_docs_are_the_generated_ones() -> None:
    found = 0
    for path in _documents():
        for m in _BLOCK.finditer(path.read_text()):
            found += 1
            expected = settings_table(ENV_PREFIX + (m["only"] or ""))
            assert m["table"] == expected, f"{path.name}: paste `bankhub settings{' --only ' + m['only'] if m['only'] else ''}`"
    readme = (ROOT / "README.md").read_text()
    assert _BLOCK.search(readme) and _BLOCK.search(readme)["only"] is None  # README has the whole table
    assert found >= 2


def test_every_variable_the_documents_name_is_a_setting() -> None:
    settings = {spec.env for _, spec in specs()}
    for path in _documents():
        named = set(re.findall(r"\bBANKHUB_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
        unknown = named - settings - NOT_SETTINGS
        assert not unknown, f"{path.name} names variables the hub does not read: {sorted(unknown)}"


def test_the_settings_command_prints_the_table() -> None:
    out = subprocess.run([str(BANKHUB), "settings"], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out == settings_table()
    alerts = subprocess.run([str(BANKHUB), "settings", "--only", "alert_"], capture_output=True, text=True, check=True, timeout=60)
    assert alerts.stdout == settings_table("BANKHUB_ALERT_") and "BANKHUB_PORT" not in alerts.stdout


def test_serve_refuses_a_bad_variable_with_one_line_and_exit_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update({"BANKHUB_DATABASE_URL": "postgresql://u:pw-123@127.0.0.1:1/x", "BANKHUB_COMMIT_WRITERS": "two"})
    proc = subprocess.run([str(BANKHUB), "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == "bankhub serve: BANKHUB_COMMIT_WRITERS must be a whole number, got 'two'\n"
