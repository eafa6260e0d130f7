"""Collector settings a service process runs with."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pipeline.config import Settings
from pipeline.runtime.service import GC_YOUNG_THRESHOLD, Service, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_raises_the_young_threshold_and_keeps_the_others(restore_gc: None) -> None:
    gc.set_threshold(700, 11, 12)
    tune_gc()
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 11, 12)


def test_never_lowers_a_higher_threshold(restore_gc: None) -> None:
    gc.set_threshold(GC_YOUNG_THRESHOLD * 3, 10, 10)
    tune_gc()
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD * 3


def test_freezes_what_start_up_allocated(restore_gc: None) -> None:
    survivor = [object() for _ in range(10)]
    tune_gc()
    assert gc.get_freeze_count() > 0
    assert not any(obj is survivor for obj in gc.get_objects())


def test_a_service_may_raise_the_in_flight_default_and_the_setting_still_wins() -> None:
    assert Service("waits", settings=Settings()).settings.max_in_flight == 256
    assert Service("waits", settings=Settings(), max_in_flight=1024).settings.max_in_flight == 1024
    chosen = Settings(max_in_flight=8)
    assert Service("waits", settings=chosen, max_in_flight=1024).settings.max_in_flight == 8
