"""Compare what went in with what came out, as Kafka's own system tests do.

``tests/kafkatest/tests/core/transactions_test.py`` in Apache Kafka copies a topic while
brokers and clients are bounced, then reads input and output in full and compares them:
the sets must be equal, the output must hold no duplicate, and (with one partition) the
output must be in input order. Here a conversation plays the partition's part: its
outputs must appear in the order of its sequence numbers, judged by each event's first
occurrence, and a repeat is allowed in at-least-once mode only as the same event again
(same event id). Dead letters are matched to the poison inputs by source coordinates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

AT_LEAST_ONCE = "at_least_once"
EXACTLY_ONCE = "exactly_once"


@dataclass(frozen=True, slots=True)
class Input:
    """An input as read back from the input topic."""

    conversation: str
    seq: int
    poison: bool
    partition: int
    offset: int
    value: bytes


@dataclass(frozen=True, slots=True)
class Output:
    """An output as read from the output topic (records in partition and offset order)."""

    conversation: str
    seq: int
    event_id: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead letter: its event id and the source coordinates it names."""

    event_id: str
    source_topic: str
    source_partition: int
    source_offset: int
    value: bytes | None
    derived_id: str  # the id its coordinates, stage and service give (dead_letter_id)


@dataclass
class Comparison:
    """Counts from one comparison; :meth:`problems` says which of them break the promise."""

    inputs: int = 0
    poison: int = 0
    outputs: int = 0
    lost: int = 0
    unexpected: int = 0
    reordered: int = 0
    inputs_out_of_order: int = 0
    split_conversations: int = 0
    duplicates: int = 0  # outputs repeating an earlier one's content (conversation, seq)
    duplicate_ids: int = 0  # outputs repeating an earlier one's event id
    duplicates_with_another_id: int = 0
    repeats_after_a_later_event: int = 0
    dead_letters: int = 0
    dead_letter_repeats: int = 0
    dead_letter_repeats_with_another_id: int = 0
    poison_not_dead_lettered: int = 0
    dead_letters_not_poison: int = 0
    dead_letter_ids_not_derived: int = 0
    examples: list[str] = field(default_factory=list)

    def problems(self, guarantee: str) -> list[str]:
        """What breaks ``guarantee`` (empty when the run kept it)."""
        must_be_zero = [
            "lost",
            "unexpected",
            "reordered",
            "inputs_out_of_order",
            "split_conversations",
            "duplicates_with_another_id",
            "dead_letter_repeats_with_another_id",
            "poison_not_dead_lettered",
            "dead_letters_not_poison",
            "dead_letter_ids_not_derived",
        ]
        if guarantee == EXACTLY_ONCE:
            must_be_zero += ["duplicates", "duplicate_ids", "dead_letter_repeats"]
        return [f"{name}={getattr(self, name)}" for name in must_be_zero if getattr(self, name)]

    def lines(self) -> list[str]:
        return [
            f"inputs {self.inputs:,} ({self.poison:,} poison), outputs read {self.outputs:,}",
            f"lost {self.lost}, unexpected {self.unexpected}, reordered {self.reordered} "
            f"(first occurrences), conversations split over partitions "
            f"{self.split_conversations}",
            f"duplicates {self.duplicates:,} by content, {self.duplicate_ids:,} by event id "
            f"({self.duplicates_with_another_id} with another event id; "
            f"{self.repeats_after_a_later_event:,} arrived after a later event of "
            "their conversation)",
            f"dead letters {self.dead_letters:,}: {self.poison - self.poison_not_dead_lettered:,}"
            f" of {self.poison:,} poison inputs, {self.dead_letter_repeats} written again "
            f"({self.dead_letter_repeats_with_another_id} with another id), "
            f"{self.dead_letters_not_poison} not of a poison input, "
            f"{self.dead_letter_ids_not_derived} with an id not derived from its coordinates",
        ]


def compare(
    inputs: Iterable[Input], outputs: Iterable[Output], letters: Iterable[Letter], source: str
) -> Comparison:
    """Compare inputs (in topic order), outputs (in topic order) and dead letters of
    ``source`` (the input topic)."""
    result = Comparison()
    wanted: set[tuple[str, int]] = set()
    poison: dict[tuple[int, int], Input] = {}
    last_input_seq: dict[str, int] = {}
    for record in inputs:
        result.inputs += 1
        if record.seq <= last_input_seq.get(record.conversation, -1):
            result.inputs_out_of_order += 1
        last_input_seq[record.conversation] = record.seq
        if record.poison:
            result.poison += 1
            poison[(record.partition, record.offset)] = record
        else:
            wanted.add((record.conversation, record.seq))

    ids: dict[tuple[str, int], set[str]] = defaultdict(set)
    seen_ids: set[str] = set()
    highest_first: dict[str, int] = {}
    partition_of: dict[str, int] = {}
    for out in outputs:
        result.outputs += 1
        key = (out.conversation, out.seq)
        if partition_of.setdefault(out.conversation, out.partition) != out.partition:
            result.split_conversations += 1
            partition_of[out.conversation] = out.partition  # count each move once
        highest = highest_first.get(out.conversation, -1)
        if key in ids:
            result.duplicates += 1
            if out.seq < highest:
                result.repeats_after_a_later_event += 1
        else:
            if key not in wanted:
                result.unexpected += 1
            if out.seq < highest:
                result.reordered += 1
                _example(result, f"{out.conversation} #{out.seq} first seen after #{highest}")
            highest_first[out.conversation] = max(highest, out.seq)
        ids[key].add(out.event_id)
        if out.event_id in seen_ids:
            result.duplicate_ids += 1
        seen_ids.add(out.event_id)
    missing = wanted - ids.keys()
    result.lost = len(missing)
    for conversation, seq in sorted(missing)[:5]:
        _example(result, f"lost {conversation} #{seq}")
    result.duplicates_with_another_id = sum(1 for found in ids.values() if len(found) > 1)

    letter_ids: dict[tuple[int, int], set[str]] = defaultdict(set)
    for letter in letters:
        result.dead_letters += 1
        if letter.event_id != letter.derived_id:
            result.dead_letter_ids_not_derived += 1
        at = (letter.source_partition, letter.source_offset)
        original = poison.get(at)
        if letter.source_topic != source or original is None or original.value != letter.value:
            result.dead_letters_not_poison += 1
            _example(result, f"dead letter of {letter.source_topic} {at} is no poison input")
            continue
        if at in letter_ids:
            result.dead_letter_repeats += 1
        letter_ids[at].add(letter.event_id)
    result.dead_letter_repeats_with_another_id = sum(1 for s in letter_ids.values() if len(s) > 1)
    result.poison_not_dead_lettered = len(poison.keys() - letter_ids.keys())
    return result


def _example(result: Comparison, text: str) -> None:
    if len(result.examples) < 10:
        result.examples.append(text)
