"""The runtime's producer settings: the latency and batching defaults, and how to override them."""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.runtime.producer import PRODUCER_DEFAULTS, producer_config, transactional_config


def test_defaults_bound_the_wait_per_hop_and_keep_batching_and_durability() -> None:
    config = producer_config(Settings(bootstrap_servers="127.0.0.1:1"), "svc-producer")
    assert config["linger.ms"] == 5
    assert config["batch.size"] == 1_000_000
    assert config["compression.type"] == "lz4"
    assert config["socket.nagle.disable"] is True
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True
    assert config["client.id"] == "svc-producer"
    assert config["bootstrap.servers"] == "127.0.0.1:1"


def test_producer_passthrough_overrides_the_shared_one_which_overrides_the_defaults() -> None:
    settings = Settings(
        kafka={"linger.ms": "20", "compression.type": "zstd"},
        producer={"linger.ms": "0"},
    )
    config = producer_config(settings, "svc-producer")
    assert config["linger.ms"] == "0"
    assert config["compression.type"] == "zstd"
    assert config["acks"] == PRODUCER_DEFAULTS["acks"]


def test_a_service_replaces_some_defaults_and_the_settings_still_override_it() -> None:
    own = {"linger.ms": 0}
    config = producer_config(Settings(bootstrap_servers="127.0.0.1:1"), "svc-producer", own)
    assert config["linger.ms"] == 0
    assert config["compression.type"] == PRODUCER_DEFAULTS["compression.type"]
    overridden = producer_config(Settings(producer={"linger.ms": "7"}), "svc-producer", own)
    assert overridden["linger.ms"] == "7"


def test_delivery_sends_its_records_without_lingering() -> None:
    """Each send waits for two acknowledgements in a row: linger.ms would add to both."""
    from pipeline.services.delivery.service import build

    service = build(Settings(bootstrap_servers="127.0.0.1:1"))
    assert service.producer_defaults == {"linger.ms": 0}
    config = transactional_config(service.settings, "delivery", "txn", service.producer_defaults)
    assert config["linger.ms"] == 0
