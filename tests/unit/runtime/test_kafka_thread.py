"""The thread that makes blocking Kafka calls: how long the running call has been inside
the client, callbacks not counted, and what is left stuck when it is shut down."""

from __future__ import annotations

import threading
import time

from pipeline.runtime.kafka_thread import KafkaThread, stuck_calls


def test_a_finished_call_is_over_before_its_caller_hears_of_it() -> None:
    thread = KafkaThread("test-finished")
    for _ in range(200):  # the caller must never see the call as still running
        thread.submit(lambda: None).result(5)
        assert thread.blocked_for == 0.0
    thread.shutdown(wait=True)
    assert "test-finished" not in stuck_calls()


def test_a_call_that_never_returns_is_stuck_and_time_in_callbacks_is_not_counted() -> None:
    release, inside = threading.Event(), threading.Event()
    thread = KafkaThread("test-stuck")

    def in_client() -> None:
        with thread.in_callback():  # the runtime's own code: not the client's
            time.sleep(0.05)
            assert thread.blocked_for == 0.0
            assert thread.in_runtime_callback
        inside.set()
        release.wait(10)

    thread.submit(in_client)
    assert inside.wait(5)
    time.sleep(0.05)
    assert thread.blocked_for > 0.0
    thread.shutdown(wait=True)  # does not wait for the stuck call
    assert "test-stuck" in stuck_calls()
    release.set()
