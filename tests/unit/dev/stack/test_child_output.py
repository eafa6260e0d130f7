"""What a supervised service's output puts in the terminal of `pipeline up`."""

from __future__ import annotations

import io
import json

from pipeline.dev.stack.child_output import ChildOutput

LOST = (
    "2026-12-07 11:02:03,456 WARNING pipeline.kafka: Kafka at 127.0.0.1:9092 is unreachable "
    "(Connect to ipv4#127.0.0.1:9092 failed: Connection refused); retrying, quietly until it "
    "is back"
)
BACK = (
    "2026-12-07 11:02:20,001 INFO pipeline.kafka: Kafka at 127.0.0.1:9092 is reachable again "
    "after 16.5s down"
)


def output() -> tuple[ChildOutput, list[str], io.BytesIO]:
    said: list[str] = []
    sink = io.BytesIO()
    return ChildOutput("agent", sink, said.append), said, sink


def test_kafka_lost_and_back_are_said_once_each_however_many_clients_say_them() -> None:
    child, said, _ = output()
    for line in (LOST, LOST, LOST, BACK, BACK):
        child.feed(line)
    assert said == [
        "agent: lost Kafka at 127.0.0.1:9092 (Connect to ipv4#127.0.0.1:9092 failed: "
        "Connection refused); it keeps retrying",
        "agent: Kafka at 127.0.0.1:9092 is back (after 16.5s down)",
    ]
    assert child.last_error is None


def test_json_log_lines_are_read_too() -> None:
    child, said, _ = output()
    message = LOST.split("pipeline.kafka: ", 1)[1]
    child.feed(json.dumps({"level": "WARNING", "logger": "pipeline.kafka", "message": message}))
    child.feed(json.dumps({"level": "ERROR", "logger": "x", "message": "the model answered 500"}))
    assert said[0].startswith("agent: lost Kafka at 127.0.0.1:9092")
    assert child.last_error == "ERROR the model answered 500"


def test_the_last_error_line_is_kept_and_every_line_copied_to_the_log() -> None:
    child, said, sink = output()
    lines = [
        "2026-12-07 11:02:03,456 INFO pipeline.runtime: started",
        "2026-12-07 11:02:03,500 ERROR uvicorn.error: [Errno 98] error while attempting to "
        "bind on address ('0.0.0.0', 8080): address already in use",
        "2026-12-07 11:02:03,501 INFO uvicorn.error: Waiting for application shutdown.",
    ]
    child.pump(io.BytesIO("".join(f"{line}\n" for line in lines).encode()))
    assert sink.getvalue().decode().splitlines() == lines
    assert child.last_error == (
        "ERROR uvicorn.error: [Errno 98] error while attempting to bind on address "
        "('0.0.0.0', 8080): address already in use"
    )
    child.feed("OSError: [Errno 98] Address already in use")
    assert child.last_error == "OSError: [Errno 98] Address already in use"
    child.feed("error: invalid setting PIPELINE_LLM__PROVIDER: unknown provider")
    assert child.last_error == "error: invalid setting PIPELINE_LLM__PROVIDER: unknown provider"
    child.forget_error()
    assert child.last_error is None
    assert said == []
