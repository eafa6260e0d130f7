"""The comparison finds each kind of failure it is meant to find (no broker needed)."""

from __future__ import annotations

from tests.chaos.chaos_check import AT_LEAST_ONCE, EXACTLY_ONCE, Input, Letter, Output, compare

SOURCE = "t.message_received"


def inputs(conversations: int = 2, per: int = 3, poison: tuple[int, ...] = ()) -> list[Input]:
    """Conversation c's inputs on partition c, offsets in sequence; ``poison`` as seq numbers
    of conversation 0."""
    return [
        Input(f"c{c}", s, c == 0 and s in poison, c, s, f"c{c}:{s}".encode())
        for s in range(per)
        for c in range(conversations)
    ]


def outputs(pairs: list[tuple[str, int]], ids: dict[tuple[str, int], str] | None = None) -> list:
    ids = ids or {}
    offsets: dict[str, int] = {}
    result = []
    for conversation, seq in pairs:
        offset = offsets[conversation] = offsets.get(conversation, -1) + 1
        event_id = ids.get((conversation, seq), f"id-{conversation}-{seq}")
        result.append(Output(conversation, seq, event_id, int(conversation[1:]), offset))
    return result


IN_ORDER = [("c0", 0), ("c1", 0), ("c0", 1), ("c1", 1), ("c0", 2), ("c1", 2)]


def test_a_clean_run_has_no_problem_in_either_mode() -> None:
    result = compare(inputs(), outputs(IN_ORDER), [], SOURCE)
    assert (result.inputs, result.outputs, result.lost, result.duplicates) == (6, 6, 0, 0)
    assert result.problems(AT_LEAST_ONCE) == []
    assert result.problems(EXACTLY_ONCE) == []


def test_a_lost_output_is_found() -> None:
    result = compare(inputs(), outputs(IN_ORDER[:-1]), [], SOURCE)
    assert result.lost == 1
    assert result.problems(AT_LEAST_ONCE) == ["lost=1"]
    assert "lost c1 #2" in result.examples


def test_a_reordered_first_occurrence_is_found() -> None:
    swapped = [("c0", 1), ("c0", 0), ("c0", 2), ("c1", 0), ("c1", 1), ("c1", 2)]
    result = compare(inputs(), outputs(swapped), [], SOURCE)
    assert result.reordered == 1
    assert "reordered=1" in result.problems(AT_LEAST_ONCE)


def test_a_same_id_repeat_is_allowed_at_least_once_only() -> None:
    # Event 0 of c0 again after event 1 was written: a reader meets it late.
    repeated = [*IN_ORDER[:3], ("c0", 0), *IN_ORDER[3:]]
    result = compare(inputs(), outputs(repeated), [], SOURCE)
    assert result.duplicates == 1
    assert result.repeats_after_a_later_event == 1
    assert result.reordered == 0
    assert result.problems(AT_LEAST_ONCE) == []
    assert result.duplicate_ids == 1
    assert result.problems(EXACTLY_ONCE) == ["duplicates=1", "duplicate_ids=1"]


def test_an_event_id_written_twice_is_a_duplicate_by_id_whatever_its_content() -> None:
    records = outputs(IN_ORDER)
    first, last = records[0], records[-1]
    records[-1] = Output(last.conversation, last.seq, first.event_id, last.partition, last.offset)
    result = compare(inputs(), records, [], SOURCE)
    assert (result.duplicates, result.duplicate_ids) == (0, 1)
    assert result.problems(EXACTLY_ONCE) == ["duplicate_ids=1"]


def test_a_repeat_with_another_id_is_a_problem() -> None:
    pairs = [*IN_ORDER, ("c1", 2)]
    records = outputs(pairs)
    last = records[-1]
    records[-1] = Output(last.conversation, last.seq, "another", last.partition, last.offset)
    result = compare(inputs(), records, [], SOURCE)
    assert result.duplicates_with_another_id == 1
    assert "duplicates_with_another_id=1" in result.problems(AT_LEAST_ONCE)


def test_an_output_of_nothing_sent_and_split_conversations_are_found() -> None:
    odd = [*IN_ORDER, ("c1", 7), ("c1", 8)]
    records = outputs(odd)
    records[-1] = Output("c1", 8, "x", 0, 99)
    result = compare(inputs(), records, [], SOURCE)
    assert result.unexpected == 2
    assert result.split_conversations == 1


def test_inputs_out_of_order_are_found() -> None:
    sent = inputs()
    sent[0], sent[2] = sent[2], sent[0]
    assert compare(sent, outputs(IN_ORDER), [], SOURCE).inputs_out_of_order == 1


def test_poison_inputs_are_matched_to_their_dead_letters() -> None:
    sent = inputs(poison=(1,))
    poisoned = sent[2]
    assert poisoned.poison
    good = [pair for pair in IN_ORDER if pair != ("c0", 1)]
    letter = Letter("dl-1", SOURCE, poisoned.partition, poisoned.offset, poisoned.value, "dl-1")

    missing = compare(sent, outputs(good), [], SOURCE)
    assert missing.poison_not_dead_lettered == 1
    assert missing.problems(AT_LEAST_ONCE) == ["poison_not_dead_lettered=1"]

    again = compare(sent, outputs(good), [letter, letter], SOURCE)
    assert (again.dead_letters, again.dead_letter_repeats) == (2, 1)
    assert again.problems(AT_LEAST_ONCE) == []
    assert again.problems(EXACTLY_ONCE) == ["dead_letter_repeats=1"]

    other_id = Letter("dl-2", SOURCE, poisoned.partition, poisoned.offset, poisoned.value, "dl-2")
    changed = compare(sent, outputs(good), [letter, other_id], SOURCE)
    assert changed.problems(AT_LEAST_ONCE) == ["dead_letter_repeats_with_another_id=1"]

    wrong = Letter("dl-3", SOURCE, 1, 0, b"c1:0", "dl-3")
    assert compare(sent, outputs(good), [letter, wrong], SOURCE).dead_letters_not_poison == 1

    random_id = Letter("random", SOURCE, poisoned.partition, poisoned.offset, poisoned.value, "x")
    underived = compare(sent, outputs(good), [random_id], SOURCE)
    assert underived.problems(AT_LEAST_ONCE) == ["dead_letter_ids_not_derived=1"]
