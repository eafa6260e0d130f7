"""The parts of pipeline.dev.kafka that need neither Java nor Maven nor a broker."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli.kafka import kafka
from pipeline.dev import kafka as devkafka
from pipeline.dev.kafka import DevKafka
from tests.paths import REPO


def _props(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_server_properties_single_kraft_node(tmp_path: Path) -> None:
    props = _props(devkafka.render_server_properties(19092, 19093, tmp_path / "kraft"))

    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["log.dirs"] == str(tmp_path / "kraft")
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["transaction.state.log.min.isr"] == "1"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
        "default.replication.factor",
    ):
        assert props[key] == "1", key


def test_controller_port_defaults_to_port_plus_one(tmp_path: Path) -> None:
    broker = DevKafka(29092, data_dir=tmp_path)
    assert broker.controller_port == 29093
    assert broker.bootstrap_servers == "127.0.0.1:29092"
    assert DevKafka(29092, controller_port=40000, data_dir=tmp_path).controller_port == 40000


def test_default_data_dir_is_per_port_under_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(devkafka.CACHE_ENV, str(tmp_path))
    assert devkafka.cache_root() == tmp_path.resolve()
    assert DevKafka(9092).data_dir == tmp_path.resolve() / "run-9092"


def test_default_cache_is_in_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(devkafka.CACHE_ENV, raising=False)
    repo = REPO
    assert devkafka.cache_root() == repo / ".cache" / "kafka"


def test_pom_asks_for_broker_and_slf4j_17_binding() -> None:
    pom = devkafka.render_pom("4.1.1")
    assert "<artifactId>kafka_2.13</artifactId><version>4.1.1</version>" in pom
    assert "<artifactId>log4j-slf4j-impl</artifactId>" in pom
    assert "slf4j2" not in pom


def test_log4j2_config_writes_to_the_log_file(tmp_path: Path) -> None:
    text = devkafka.render_log4j2(tmp_path / "broker.log")
    assert f"appender.file.fileName = {tmp_path / 'broker.log'}" in text
    assert "rootLogger.appenderRef.file.ref = FILE" in text


def test_cluster_id_is_16_bytes_base64url() -> None:
    for _ in range(50):
        cid = devkafka.random_cluster_id()
        assert len(cid) == 22 and not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_format_command_uses_static_quorum(tmp_path: Path) -> None:
    cmd = devkafka.format_command(
        "java", tmp_path / "libs", tmp_path / "l.properties", "abc", tmp_path / "s.properties"
    )
    i = cmd.index("kafka.tools.StorageTool")
    assert cmd[i + 1 :] == ["format", "-t", "abc", "-c", str(tmp_path / "s.properties")]
    assert "--standalone" not in cmd
    assert cmd[cmd.index("-cp") + 1] == f"{tmp_path / 'libs'}/*"
    keep = devkafka.format_command(
        "java", tmp_path, tmp_path, "abc", tmp_path / "s", ignore_formatted=True
    )
    assert keep[-1] == "--ignore-formatted"


def test_broker_command(tmp_path: Path) -> None:
    cmd = devkafka.broker_command(
        "/usr/bin/java", tmp_path / "libs", tmp_path / "log4j2.properties", ["-Xmx512m"], Path("s")
    )
    assert cmd[0] == "/usr/bin/java"
    assert "-Xmx512m" in cmd
    assert f"-Dlog4j2.configurationFile={tmp_path / 'log4j2.properties'}" in cmd
    assert cmd[-2:] == ["kafka.Kafka", "s"]


def test_pid_file_round_trip(tmp_path: Path) -> None:
    pid_file = tmp_path / "broker.pid"
    assert devkafka.read_pid(pid_file) is None
    devkafka.write_pid(pid_file, 4242)
    assert devkafka.read_pid(pid_file) == 4242
    pid_file.write_text("garbage\n")
    assert devkafka.read_pid(pid_file) is None
    pid_file.write_text("0\n")
    assert devkafka.read_pid(pid_file) is None


def test_pid_alive_and_zombies() -> None:
    assert devkafka.pid_alive(os.getpid())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while devkafka.pid_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)  # the child exits and stays a zombie until it is waited for
    assert not devkafka.pid_alive(proc.pid)
    proc.wait()
    assert not devkafka.pid_alive(proc.pid)


def test_stale_pid_file_is_not_a_running_broker(tmp_path: Path) -> None:
    broker = DevKafka(devkafka.free_port(), data_dir=tmp_path)
    devkafka.write_pid(broker.pid_file, os.getpid())  # alive, but not kafka.Kafka
    assert broker.pid() is None
    assert not broker.is_running()
    assert "not running" in broker.status()
    assert broker.stop() is False
    assert not broker.pid_file.exists()


def test_fetch_skips_maven_when_marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "9.9.9"
    (home / "libs").mkdir(parents=True)
    (home / "libs" / "kafka-tools-9.9.9.jar").touch()
    (home / ".fetched").write_text("kafka_2.13-9.9.9.jar\nkafka-tools-9.9.9.jar\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no mvn: must not be needed
    assert devkafka.fetch("9.9.9", root=tmp_path) == home / "libs"


def test_a_cache_from_before_the_tools_is_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "9.9.9"
    (home / "libs").mkdir(parents=True)
    (home / ".fetched").write_text("kafka_2.13-9.9.9.jar\n")  # no kafka-tools jar
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("MAVEN_HOME", raising=False)
    with pytest.raises(devkafka.DevKafkaError, match="mvn"):  # it wants Maven again
        devkafka.fetch("9.9.9", root=tmp_path)


def test_fetch_without_maven_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("MAVEN_HOME", raising=False)
    with pytest.raises(devkafka.DevKafkaError, match="mvn"):
        devkafka.fetch("9.9.9", root=tmp_path)


def test_start_refuses_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(devkafka.DevKafkaError, match=f"port {port}"):
            DevKafka(port, controller_port=devkafka.free_port(), data_dir=tmp_path).start()


def test_module_main_status_when_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = str(devkafka.free_port())
    assert devkafka.main(["status", "--port", port, "--data-dir", str(tmp_path)]) == 3
    assert "not running" in capsys.readouterr().out
    assert devkafka.main(["stop", "--port", port, "--data-dir", str(tmp_path)]) == 0
    assert "not running" in capsys.readouterr().out


def test_click_group(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(kafka, ["--help"])
    assert result.exit_code == 0
    for command in ("start", "stop", "status", "fetch"):
        assert command in result.output
    port = str(devkafka.free_port())
    result = runner.invoke(kafka, ["status", "--port", port, "--data-dir", str(tmp_path)])
    assert result.exit_code == 3
    assert "not running" in result.output
    result = runner.invoke(kafka, ["stop", "--port", port, "--data-dir", str(tmp_path)])
    assert result.exit_code == 0


def test_cluster_nodes_share_a_quorum_and_replicate_three_times(tmp_path: Path) -> None:
    cluster = devkafka.DevKafkaCluster(3, 29092, data_dir=tmp_path)
    assert cluster.bootstrap_servers == "127.0.0.1:29092,127.0.0.1:29094,127.0.0.1:29096"
    assert len({node.cluster_id for node in cluster.nodes}) == 1
    voters = "1@127.0.0.1:29093,2@127.0.0.1:29095,3@127.0.0.1:29097"
    for i, node in enumerate(cluster.nodes, start=1):
        props = _props(
            devkafka.render_server_properties(
                node.port,
                node.controller_port,
                node.kraft_dir,
                node_id=node.node_id,
                voters=node.voters,
                replication_factor=node.replication_factor,
            )
        )
        assert props["node.id"] == str(i)
        assert props["controller.quorum.voters"] == voters
        assert node.data_dir == tmp_path / f"node-{i}"
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["default.replication.factor"] == "3"
        assert props["min.insync.replicas"] == "2"
        assert props["transaction.state.log.min.isr"] == "2"


def test_command_lines_keep_data_unless_wiped(tmp_path: Path) -> None:
    one = devkafka.local_kafka(1, 29092, data_dir=tmp_path)
    assert isinstance(one, DevKafka) and one.keep_data
    assert not devkafka.local_kafka(1, 29092, data_dir=tmp_path, wipe=True).keep_data
    three = devkafka.local_kafka(3, 29092, data_dir=tmp_path)
    assert isinstance(three, devkafka.DevKafkaCluster)
    assert all(node.keep_data for node in three.nodes)
    with pytest.raises(devkafka.DevKafkaError, match="controller-port"):
        devkafka.local_kafka(3, 29092, controller_port=40000)


def test_a_kept_cluster_reuses_its_cluster_id(tmp_path: Path) -> None:
    meta = tmp_path / "node-1" / "kraft" / "meta.properties"
    meta.parent.mkdir(parents=True)
    meta.write_text("version=1\ncluster.id=AbCdEfGhIjKlMnOpQrStUv\nnode.id=1\n")
    kept = devkafka.DevKafkaCluster(3, 29092, data_dir=tmp_path, keep_data=True)
    assert {node.cluster_id for node in kept.nodes} == {"AbCdEfGhIjKlMnOpQrStUv"}
    fresh = devkafka.DevKafkaCluster(3, 29092, data_dir=tmp_path)
    assert {node.cluster_id for node in fresh.nodes} != {"AbCdEfGhIjKlMnOpQrStUv"}
