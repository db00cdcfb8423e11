"""The bench's priority helpers: `make bench` measures sections 1-5 at nice -20 and one block
at the nice it started with; both must leave the thread's nice as they found it."""

from __future__ import annotations

import os

import pytest

from tests.benchkit import RAISED_NICE, normal_priority, raised_priority


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="raising the priority needs root")
def test_the_raised_priority_holds_inside_and_is_given_back() -> None:
    before = _nice()
    with raised_priority() as priority:
        assert priority.raised and priority.normal == before
        assert _nice() == RAISED_NICE == priority.nice
        with normal_priority(priority):
            assert _nice() == before
        assert _nice() == RAISED_NICE
    assert _nice() == before


def test_a_refused_raise_says_so_and_changes_nothing() -> None:
    # A child at nice 5 that is not root cannot go below its nice; as root, drop the right
    # first. Either way the child reports what raised_priority saw.
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            os.setpriority(os.PRIO_PROCESS, 0, 5)
            if os.geteuid() == 0:
                os.setresuid(65534, 65534, 65534)  # nobody
            with raised_priority() as priority:
                inside = _nice()
                with normal_priority(priority):
                    normal = _nice()
            os.write(write, f"{priority.raised} {priority.nice} {inside} {normal} {_nice()} "
                            f"{priority.said()}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        said = pipe.read()
    os.waitpid(child, 0)
    raised, nice, inside, normal, after, text = said.split(" ", 5)
    assert (raised, nice, inside, normal, after) == ("False", "5", "5", "5", "5")
    assert "refused" in text
