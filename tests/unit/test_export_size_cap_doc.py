"""The export size-cap `problem` text is the one the setting (and README) documents."""

from __future__ import annotations


def test_the_size_cap_problem_is_the_one_the_setting_documents() -> None:
    # README's settings table quotes the `problem` an export writes for an attachment past the cap
    import dataclasses

    from bankhub.actions.exports import SIZE_CAP_PROBLEM
    from bankhub.settings import Settings

    (field,) = [f for f in dataclasses.fields(Settings) if f.name == "export_max_attachment_bytes"]
    assert f"`problem: {SIZE_CAP_PROBLEM}`" in field.metadata["setting"].doc
