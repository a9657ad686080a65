"""The edge freezes its start-up heap: full collections then skip what start-up built."""

from __future__ import annotations

import gc

from ops.application import freeze_startup_heap


def test_the_start_up_heap_is_frozen_and_no_longer_tracked():
    survivors = [[n] for n in range(10_000)]  # long-lived objects, like a loaded model's
    tracked_before = len(gc.get_objects())
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() >= len(survivors)
        assert len(gc.get_objects()) < tracked_before - len(survivors)
    finally:
        gc.unfreeze()  # the test process goes on collecting as before
    assert gc.get_freeze_count() == 0
