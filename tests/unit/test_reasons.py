"""One table of short reasons for the whole console, keyed by problem code (an enum)."""

from __future__ import annotations

from xencenter_lite.core.checks import Code, Problem, Severity
from xencenter_lite.core.reasons import SHORT_REASONS, first_refusal, most_telling, short_reason


def test_every_code_in_the_table_is_a_problem_code_and_reads_as_a_few_words() -> None:
    assert all(isinstance(code, Code) for code in SHORT_REASONS)
    assert all(0 < len(words) <= 30 for words in SHORT_REASONS.values())
    assert short_reason(Problem(Code.DESTINATION_DISCONNECTED, "'x' is not connected")) == \
        "Disconnected"  # the menu, the wizard and the drop: the same words
    # A code without words is said as itself, never guessed from the message.
    assert short_reason(Problem(Code.SR_REFUSED, "Cannot copy to SR 'x': full.")) == "Sr refused"


def test_the_most_telling_refusal_comes_first_and_storage_choices_do_not_refuse() -> None:
    memory = Problem(Code.NOT_ENOUGH_MEMORY, "m")
    same = Problem(Code.SAME_SERVER, "s")
    space = Problem(Code.NOT_ENOUGH_SPACE, "d")  # the wizard's Storage page can fix that
    warning = Problem(Code.SAME_SERVER, "w", severity=Severity.WARNING)
    assert first_refusal([memory, space, same]) is same
    assert first_refusal([space, warning]) is None
    assert most_telling([memory, Problem(Code.ESTIMATE, "e")]) is memory
    assert most_telling([]) is None
    assert Code.SAME_SERVER == "SAME_SERVER"  # as --json writes it
