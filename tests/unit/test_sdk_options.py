"""The SDK client's connection options: one frozen, typed object, its defaults stated once."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from bankhub_client import Client, ClientOptions, ReconnectPolicy

README = Path(__file__).resolve().parents[2] / "clients" / "python" / "README.md"


def test_connect_and_the_constructor_take_one_options_object() -> None:
    """No option is a keyword of its own: adding one means adding it to ClientOptions only."""
    assert list(inspect.signature(Client.connect).parameters) == ["url", "token", "options", "api"]
    assert list(inspect.signature(Client.__init__).parameters) == ["self", "url", "token", "options", "api"]


def test_the_readme_table_states_every_option_and_its_default() -> None:
    rows = re.findall(r"^\| (`[^|]+`) \| `([^`]+)`", README.read_text(encoding="utf-8"), flags=re.M)
    documented = {
        name: eval(default, {"ReconnectPolicy": ReconnectPolicy})  # the README's own literals
        for names, default in rows
        for name in re.findall(r"`(\w+)`", names)
    }
    assert documented == {f.name: f.default for f in dataclasses.fields(ClientOptions)}


def test_the_options_are_frozen_and_keep_their_own_copy_of_the_cursors() -> None:
    cursors = {"c1": 4}
    options = ClientOptions(cursors=cursors)
    cursors["c1"] = 9
    assert options.cursors == {"c1": 4}
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.sync_limit = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        options.cursors["c1"] = 9  # type: ignore[index]


def test_sync_on_connect_defaults_to_resuming_when_cursors_are_given() -> None:
    assert ClientOptions().syncs_on_connect is False
    assert ClientOptions(cursors={}).syncs_on_connect is True
    assert ClientOptions(account_cursors={"a1": 2}).syncs_on_connect is True
    assert ClientOptions(cursors={"c1": 1}, sync_on_connect=False).syncs_on_connect is False
    assert ClientOptions(sync_on_connect=True).syncs_on_connect is True


def test_an_invalid_sync_limit_is_refused_when_the_options_are_made() -> None:
    with pytest.raises(ValueError, match="sync_limit"):
        ClientOptions(sync_limit=0)


async def test_a_client_keeps_the_options_it_was_given() -> None:
    options = ClientOptions(reconnect=ReconnectPolicy(max_attempts=3), request_timeout=2.5)
    client = Client("http://hub.test", token="t", options=options)
    try:
        assert client.options is options
        assert Client("http://hub.test", token="t").options == ClientOptions()
    finally:
        await client.close()
    with pytest.raises(ValueError, match="token"):
        Client("http://hub.test", token="", options=options)
