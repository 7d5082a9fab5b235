"""Kafka client settings come from declared variables (issue 8): timeouts, poll sizes, static membership."""

from __future__ import annotations

import pytest

from trustwatch.platform import config
from trustwatch.platform.bus.kafka import KafkaBus, client_settings, instance_id


def _env(values):
    return lambda name: values.get(name, config.VARIABLES[name].default)


def test_defaults_shorten_the_session_and_keep_kafka_poll_defaults():
    s = client_settings(_env({}), environ={})
    assert s == {
        "session_timeout_ms": 10000,
        "heartbeat_interval_ms": 3000,
        "max_poll_interval_ms": 300000,
        "max_poll_records": 500,
        "request_timeout_ms": 30000,
        "reconnect_backoff_max_ms": 2000,
    }


def test_every_setting_comes_from_its_variable():
    s = client_settings(
        _env(
            {
                "TRUSTWATCH_KAFKA_SESSION_TIMEOUT_MS": "6000",
                "TRUSTWATCH_KAFKA_MAX_POLL_INTERVAL_MS": "600000",
                "TRUSTWATCH_KAFKA_MAX_POLL_RECORDS": "64",
                "TRUSTWATCH_KAFKA_REQUEST_TIMEOUT_MS": "40000",
                "TRUSTWATCH_KAFKA_RECONNECT_BACKOFF_MAX_MS": "5000",
                "TRUSTWATCH_INSTANCE_ID": "gen-0",
            }
        ),
        environ={},
    )
    assert s["session_timeout_ms"] == 6000 and s["heartbeat_interval_ms"] == 2000
    assert s["max_poll_interval_ms"] == 600000 and s["max_poll_records"] == 64
    assert s["request_timeout_ms"] == 40000 and s["group_instance_id"] == "gen-0"
    assert s["reconnect_backoff_max_ms"] == 5000


def test_every_client_gets_the_short_reconnect_backoff(monkeypatch):
    """kafka-python waits up to 30 s between reconnects by default; after a broker restart the services
    sat idle that long (issue 8 campaign). Producers, consumers and the admin client all take the setting."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    monkeypatch.setenv("TRUSTWATCH_KAFKA_RECONNECT_BACKOFF_MAX_MS", "1500")
    bus = KafkaBus("127.0.0.1:1")
    for cls in (KafkaProducer, KafkaConsumer, KafkaAdminClient):
        assert cls.DEFAULT_CONFIG["reconnect_backoff_max_ms"] == 30000  # what the setting overrides
        assert bus._client_options(cls)["reconnect_backoff_max_ms"] == 1500, cls.__name__
    monkeypatch.setenv("TRUSTWATCH_KAFKA_RECONNECT_BACKOFF_MAX_MS", "0")
    with pytest.raises(SystemExit, match="TRUSTWATCH_KAFKA_RECONNECT_BACKOFF_MAX_MS"):
        KafkaBus("127.0.0.1:1")


@pytest.mark.parametrize("bad", ["0", "-5", "ten"])
def test_bad_values_are_refused(bad):
    with pytest.raises(ValueError, match="TRUSTWATCH_KAFKA_MAX_POLL_RECORDS"):
        client_settings(_env({"TRUSTWATCH_KAFKA_MAX_POLL_RECORDS": bad}), environ={})


def test_static_membership_defaults_to_the_pod_name_in_kubernetes_only():
    k8s = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "generator-7d9f-abcde"}
    assert instance_id(_env({}), k8s) == "generator-7d9f-abcde"
    assert instance_id(_env({}), {"HOSTNAME": "laptop"}) == ""  # local processes share a host name
    assert instance_id(_env({"TRUSTWATCH_INSTANCE_ID": "none"}), k8s) == ""
    assert instance_id(_env({"TRUSTWATCH_INSTANCE_ID": "a b/c"}), {}) == "a_b_c"


def test_the_bus_passes_the_settings_to_its_clients(monkeypatch):
    monkeypatch.setenv("TRUSTWATCH_KAFKA_MAX_POLL_RECORDS", "32")
    monkeypatch.setenv("TRUSTWATCH_KAFKA_UNASSIGNED_REJOIN_S", "15")
    bus = KafkaBus("127.0.0.1:1")  # no connection is made until a client is created
    assert bus._options["max_poll_records"] == 32 and bus.unassigned_rejoin_s == 15
    assert KafkaBus("127.0.0.1:1", max_poll_records=8)._options["max_poll_records"] == 8  # arguments win
    monkeypatch.setenv("TRUSTWATCH_KAFKA_SESSION_TIMEOUT_MS", "soon")
    with pytest.raises(SystemExit, match="TRUSTWATCH_KAFKA_SESSION_TIMEOUT_MS"):
        KafkaBus("127.0.0.1:1")


class _NoMetadataConsumer:
    """What kafka-python's consumer looks like to a member that joined without its topics' metadata."""

    def __init__(self) -> None:
        self.rejoins = 0
        self.updates = 0
        self._coordinator = self
        self._cluster = self

    def assignment(self):
        return set()

    def partitions_for_topic(self, topic):
        return None

    def request_rejoin(self):
        self.rejoins += 1

    def request_update(self):
        self.updates += 1


def test_a_member_without_partitions_or_metadata_rejoins_after_the_setting(monkeypatch):
    # Seen in the fault campaign: after NotCoordinator on a fresh broker the member never had the topic's
    # metadata, so the lag read as 0 and the unassigned check never re-joined.
    from trustwatch.platform.bus import kafka as kmod

    member = object.__new__(kmod._KafkaConsumer)
    fake = _NoMetadataConsumer()
    member._consumer, member._topics, member._group = fake, ["t"], "g"
    member._rejoin_after, member._unassigned_since, member._unassigned_snapshot = 10.0, None, {}
    clock = [100.0]
    monkeypatch.setattr(kmod.time, "monotonic", lambda: clock[0])
    member._check_assignment()  # first seen without a partition: asks for metadata, starts the period
    assert (fake.updates, fake.rejoins) == (1, 0)
    clock[0] = 105.0
    member._check_assignment()
    assert fake.rejoins == 0
    clock[0] = 111.0
    member._check_assignment()
    assert fake.rejoins == 1


class _GrownTopicConsumer(_NoMetadataConsumer):
    """A member holding partition 0 whose metadata then lists a partition 1 that no assignment followed."""

    def __init__(self) -> None:
        super().__init__()
        self.partitions = {0}
        self.need = False
        self._join_task = None

    def assignment(self):
        from kafka import TopicPartition

        return {TopicPartition("t", 0)}

    def partitions_for_topic(self, topic):
        return set(self.partitions)

    def need_rejoin(self):
        return self.need


def test_a_partition_change_no_assignment_followed_rejoins_once(monkeypatch):
    # The backstop seen needed in CI: a partition was added, the re-balance it should start was lost
    # with no join left in hand, and the member kept partition 0 alone.
    from trustwatch.platform.bus import kafka as kmod

    member = object.__new__(kmod._KafkaConsumer)
    fake = _GrownTopicConsumer()
    member._consumer, member._topics, member._group = fake, ["t"], "g"
    member._listener = kmod._JoinListener()
    member._known_partitions, member._known_changed_at = frozenset(), None
    clock = [100.0]
    monkeypatch.setattr(kmod.time, "monotonic", lambda: clock[0])
    member._listener.on_partitions_assigned([])  # assigned at 100
    member._resume_dropped_join()  # first look: {t0} known
    clock[0] = 200.0
    member._resume_dropped_join()
    assert fake.rejoins == 0  # nothing changed since the assignment... and it holds every partition
    fake.partitions = {0, 1}
    clock[0] = 210.0
    member._resume_dropped_join()  # the change is seen
    clock[0] = 210.0 + kmod.METADATA_REJOIN_S - 1
    member._resume_dropped_join()
    assert fake.rejoins == 0
    clock[0] = 210.0 + kmod.METADATA_REJOIN_S + 1
    member._resume_dropped_join()
    assert fake.rejoins == 1
    clock[0] += 100
    member._resume_dropped_join()
    assert fake.rejoins == 1  # once per change
    # an assignment after the change: the group re-balanced, nothing to do
    fake.partitions = {0, 1, 2}
    member._resume_dropped_join()
    clock[0] += 1
    member._listener.on_partitions_assigned([])
    clock[0] += 100
    member._resume_dropped_join()
    assert fake.rejoins == 1
