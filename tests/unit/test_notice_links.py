"""Links in official-account notices: a browser must read the host the hub was shown."""

from __future__ import annotations

import msgspec
import pytest

from bankhub.protocol.frames import ArticleNotice


@pytest.mark.parametrize("field", ["action_url", "image_url"])
@pytest.mark.parametrize(
    "url",
    [
        "https://phish.example\\.icbc.com.cn/offer",  # a browser reads the backslash as a slash
        "https:\\\\phish.example/offer",
        "https://icbc.com.cn/\u202eoffer",
        "https://icbc.com.cn/ offer",
    ],
)
def test_a_notice_link_a_browser_reads_differently_is_refused(field: str, url: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"kind": "article", "title": "Offer", field: url}, ArticleNotice)


def test_plain_notice_links_pass() -> None:
    notice = msgspec.convert(
        {"kind": "article", "title": "Offer", "action_url": "https://www.icbc.com.cn/a?b=c#d", "image_url": "bankhub://services"},
        ArticleNotice,
    )
    assert notice.action_url == "https://www.icbc.com.cn/a?b=c#d"
