"""The supervisor restarts a dead service from the moment it starts them, not only once
every service is ready, and gives up on one that keeps exiting."""

from __future__ import annotations

import os

from pipeline.dev.stack.supervisor import Supervisor


def test_a_service_dying_during_start_up_is_restarted_until_the_supervisor_gives_up() -> None:
    # `pipeline run no-such-service` exits at once with a usage error.
    supervisor = Supervisor({"no-such-service": dict(os.environ)}, max_restarts=2)
    supervisor.start()
    try:
        # Nobody calls watch(): supervision runs from start().
        assert supervisor.stopping.wait(60), "the supervisor never gave up"
    finally:
        codes = supervisor.stop()
    assert supervisor.failure is not None
    assert "no-such-service keeps exiting" in supervisor.failure
    assert supervisor.services[0].restarts == 3
    assert codes["no-such-service"] not in (0, None)


def test_a_service_that_exits_says_why_in_the_terminal() -> None:
    # A setting that cannot work: `pipeline run` refuses it at start, naming the variable.
    env = {
        **os.environ,
        "PIPELINE_GATEWAY__CHAT_TOKEN_SECRET": "short",
        "PIPELINE_METRICS_PORT": "0",
    }
    said: list[str] = []
    supervisor = Supervisor(
        {"echo": env},
        max_restarts=1,
        notify=said.append,
        advise=lambda name, error: f"advice for {name}",
    )
    supervisor.start()
    try:
        assert supervisor.stopping.wait(60), "the supervisor never gave up"
    finally:
        supervisor.stop()
    cause = "error: invalid setting PIPELINE_GATEWAY__CHAT_TOKEN_SECRET: a chat token secret"
    assert said[0].startswith(f"echo exited with 2: {cause}"), said
    assert said[0].endswith("(advice for echo); restarting in 0.5s"), said
    assert supervisor.failure is not None and cause in supervisor.failure
    assert said[-1].endswith("; stopping the stack")
