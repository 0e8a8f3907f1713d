"""read_ahead: the items in order, an error where it happened, and a producer that stops when the loop does."""
import threading
import time

import pytest

from store.read_ahead import read_ahead


def test_every_item_in_order_across_chunks():
    assert list(read_ahead(iter(range(10_007)), chunk_size=100, depth=2)) == list(range(10_007))
    assert list(read_ahead(iter([]))) == []


def test_an_error_is_raised_after_the_items_before_it():
    def items():
        yield from range(250)
        raise ValueError("line 251 is bad")
    seen = []
    with pytest.raises(ValueError, match="line 251 is bad"):
        for item in read_ahead(items(), chunk_size=100):
            seen.append(item)
    assert seen == list(range(200))  # the last, partial chunk never arrives: the error comes in its place


def test_leaving_the_loop_stops_the_producer():
    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]
    for item in read_ahead(endless(), chunk_size=10, depth=2):
        if item == 5:
            break
    time.sleep(0.3)
    count = len(produced)
    time.sleep(0.3)
    assert len(produced) == count <= 10 * 4  # at most a few chunks ahead, then nothing more
    assert not [thread for thread in threading.enumerate() if thread.name == "read-ahead"]


def test_leaving_does_not_wait_for_a_producer_stuck_reading():
    """An import interrupted while its input has stalled (a pipe that sends nothing) still exits promptly."""
    release = threading.Event()

    def stalled():
        yield 1
        release.wait(10)  # a read that doesn't return
        yield 2
    started = time.monotonic()
    with pytest.raises(KeyError):
        for _ in read_ahead(stalled(), chunk_size=1):
            raise KeyError("the consumer fails")
    assert time.monotonic() - started < 3
    release.set()
