"""The ready queue against a plain list: same order after any sequence of operations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor.core import ready_queue
from reactor.core.ready_queue import ReadyQueue

NAMES = [f"f{n}.pod5" for n in range(12)]
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["append", "push_front", "discard"]), st.sampled_from(NAMES)),
        st.tuples(st.just("move_to_back"), st.lists(st.sampled_from(NAMES), max_size=6)),
    ),
    max_size=200,
)


@given(operations=OPERATIONS, segment=st.sampled_from([1, 2, 4, 1 << 15]))
def test_the_queue_keeps_the_order_a_list_would(
    operations: list[tuple[str, object]], segment: int
) -> None:
    """append, push_front, discard and move_to_back give a list's order, with segments
    of any size (1: a segment per name)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ready_queue, "SEGMENT", segment)
        queue = ReadyQueue()
        model: list[str] = []
        for operation, argument in operations:
            if operation == "move_to_back":
                assert isinstance(argument, list)
                moved = list(dict.fromkeys(n for n in argument if n in model))
                model = [n for n in model if n not in moved] + moved
                queue.move_to_back(argument)  # names not in the queue are skipped
            else:
                assert isinstance(argument, str)
                if operation == "append" and argument in model:
                    continue  # append takes a name not in the queue
                if argument in model:
                    model.remove(argument)
                if operation == "append":
                    model.append(argument)
                elif operation == "push_front":
                    model.insert(0, argument)
                getattr(queue, operation)(argument)
            assert list(queue) == model
            assert len(queue) == len(model)
            assert all((n in queue) == (n in model) for n in NAMES)
            if model:
                assert queue.first() == model[0]


def test_taking_from_the_front_drops_the_emptied_segments() -> None:
    """Taking 10^5 names from the front one by one leaves only the segments still
    holding names, so a walk from the front passes few removed slots."""
    queue = ReadyQueue()
    for n in range(100_000):
        queue.append(f"f{n}")
    for n in range(90_000):
        queue.discard(f"f{n}")
    assert queue.first() == "f90000"
    assert len(queue._segments) == -(-10_000 // ready_queue.SEGMENT) + 1
    assert len(queue) == 10_000
