"""Which ``@handles`` a note mentions."""

from __future__ import annotations

from service.conversations.services import mention_handles


def test_handles_are_email_local_parts_at_the_start_of_a_word() -> None:
    assert mention_handles("@Ada.Lovelace please, then @grace-h. Thanks @bob_2!") == {
        "ada.lovelace",
        "grace-h",
        "bob_2",
    }
    assert mention_handles("mail ada@example.com or a.@b") == set()
    assert mention_handles("(@lea) @@x @-y") == {"lea"}
    assert mention_handles("") == set()
