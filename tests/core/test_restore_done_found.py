"""`RunState.restore_done_found`, the start-up scan's records of files done by the seed's
rule, many at once: the same records and counts as `restore_done` one name at a time,
each file then marked present (what the scan did before)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reactor.core.model import FileState
from reactor.core.state import RunState

NAMES = st.sampled_from([f"f{n}.pod5" for n in range(12)])


def _records(state: RunState) -> dict[str, tuple[FileState, float, bool, int]]:
    return {
        name: (record.state, record.changed_at, record.present, record.failures)
        for name, record in state.files.items()
    }


@given(
    known=st.lists(st.tuples(NAMES, st.booleans()), max_size=8),
    found=st.lists(NAMES, max_size=12, unique=True),
)
def test_many_at_once_is_each_one_restored_and_present(
    known: list[tuple[str, bool]], found: list[str]
) -> None:
    def start() -> RunState:
        state = RunState(3)
        for name, complete in known:  # records the journal or the scan made before
            state.file_found(name, complete=complete, now=1.0)
        return state

    one_by_one, at_once = start(), start()
    for name in found:
        if name not in one_by_one.files:
            one_by_one.restore_done(name, 2.0)
            one_by_one.files[name].present = True
    at_once.restore_done_found(found, 2.0)

    assert _records(at_once) == _records(one_by_one)
    assert at_once.counts() == one_by_one.counts()
    assert list(at_once.ready_names()) == list(one_by_one.ready_names())
