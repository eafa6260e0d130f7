"""Values read from folders, read again only when a file changed."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.config import Settings
from pipeline.events.catalog import load_settings_catalog
from pipeline.file_cache import FolderCache, folder_signature
from pipeline.topology import load_settings_topology


def test_a_value_is_read_once_until_a_file_changes(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("one")
    cache: FolderCache[int] = FolderCache()
    reads: list[int] = []

    def read() -> int:
        reads.append(1)
        return len(reads)

    def key() -> object:
        return folder_signature([tmp_path], ["*.yaml"])

    assert cache.get(key(), read) == 1
    assert cache.get(key(), read) == 1
    (tmp_path / "a.yaml").write_text("two, longer")
    assert cache.get(key(), read) == 2
    (tmp_path / "b.yaml").write_text("")
    assert cache.get(key(), read) == 3
    os.utime(tmp_path / "b.yaml", ns=(1, 1))
    assert cache.get(key(), read) == 4
    (tmp_path / "b.yaml").unlink()
    assert cache.get(key(), read) == 2  # the folder as it was at the second read


def test_the_oldest_values_go_first() -> None:
    cache: FolderCache[str] = FolderCache(size=2)
    for key in ("a", "b", "c"):
        cache.get(key, lambda k=key: k)  # type: ignore[misc]
    assert cache.get("a", lambda: "again") == "again"
    assert cache.get("c", lambda: "again") == "c"


def test_services_of_one_process_share_the_topology_and_the_catalog() -> None:
    settings = Settings()
    assert load_settings_topology(settings) is load_settings_topology(settings)
    assert load_settings_catalog(settings) is load_settings_catalog(settings)
    assert (
        load_settings_topology(settings.model_copy(update={"topic_replication_factor": 1}))[
            "message_received"
        ].replication_factor
        == 1
    )
