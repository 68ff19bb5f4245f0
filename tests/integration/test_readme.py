"""The README's promises, run as a new user would: the chat snippet against a live hub."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from bankhub.runner import RunningNode

README = Path(__file__).resolve().parents[2] / "README.md"


def _snippet() -> str:
    text = README.read_text()
    section = text[text.index("### Chat in ten lines") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README has no chat snippet"
    return match.group(1)


async def test_readme_chat_snippet_runs_against_a_hub(node: RunningNode, tmp_path: Path) -> None:
    code = _snippet()
    assert "http://127.0.0.1:8000" in code
    script = tmp_path / "chat.py"
    script.write_text(code.replace("http://127.0.0.1:8000", node.http_url))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines() == [
        "rm.wang got: Has my card limit been raised?",
        "c.li got: Yes, since this morning.",
    ]


def test_quick_start_has_exactly_the_two_commands_and_ci_runs_the_second() -> None:
    text = README.read_text()
    quick = text[text.index("## Quick start") : text.index("### Chat in ten lines")]
    commands = re.findall(r"```sh\n(.*?)\n```", quick, re.S)
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    assert "bankhub dev" in commands[0] and "pytest" in commands[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1] in ci


async def test_readme_official_account_snippet_publishes_to_beijing_only(node: RunningNode) -> None:
    import json

    import httpx

    text = README.read_text()
    section = text[text.index("### Official accounts") :]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "README has no official-account snippet"
    script = match.group(1).replace("localhost:8000", f"127.0.0.1:{node.port}")
    proc = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    notice = json.loads(out.decode().strip().splitlines()[-1])
    assert notice["status"] == "published" and notice["body"]["text"] == "Beijing branches close at 15:00 on Friday"
    async with httpx.AsyncClient(base_url=node.http_url) as http:
        for user, expected in (("c.li", 1), ("c.zhou", 0)):
            token = (await http.post("/v1/sessions", json={"username": user, "password": "bankhub-demo"})).json()["token"]
            page = await http.get(f"/v1/accounts/{notice['account_id']}/notices", headers={"authorization": f"Bearer {token}"})
            assert len(page.json()["notices"]) == expected, user
