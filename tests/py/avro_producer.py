"""Produces Herald events the way a Kafka shop's Avro producer does: the
confluent-kafka client's AvroSerializer, which registers the writer schema
with the Schema Registry and frames each value in the Confluent wire format
(magic byte 0, 4-byte schema id, Avro body). Used by tests/tests/registry.rs.

    avro_producer.py BOOTSTRAP TOPIC REGISTRY_URL VARIANT PREFIX COUNT [USER:PASSWORD]

VARIANT picks the writer schema, derived from schemas/event.avsc:
  current  the schema as it is
  older    one version older: without the optional `tenant` field
  newer    one version newer: with an added `priority` int (default 0)
Prints the produced event ids as a JSON list.
"""

import json
import pathlib
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

EVENT_AVSC = pathlib.Path(__file__).resolve().parents[2] / "schemas" / "event.avsc"


def writer_schema(variant):
    schema = json.loads(EVENT_AVSC.read_text())
    if variant == "older":
        schema["fields"] = [f for f in schema["fields"] if f["name"] != "tenant"]
    elif variant == "newer":
        schema["fields"].append({"name": "priority", "type": "int", "default": 0})
    elif variant != "current":
        raise SystemExit(f"unknown variant {variant!r}")
    return json.dumps(schema)


def main():
    bootstrap, topic, registry_url, variant, prefix, count = sys.argv[1:7]
    conf = {"url": registry_url}
    if len(sys.argv) > 7:
        conf["basic.auth.user.info"] = sys.argv[7]
    serializer = AvroSerializer(SchemaRegistryClient(conf), writer_schema(variant))
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    failures = []

    def report(err, _msg):
        if err is not None:
            failures.append(str(err))

    ids = []
    for i in range(int(count)):
        event_id = f"{prefix}-{variant}-{i}"
        event = {
            "id": event_id,
            "source": "/billing",
            "type": "subscription.started",
            "time": "2026-12-08T10:00:00Z",
            "subject": f"cus_{i % 5}",
            "data": json.dumps({"plan": "pro", "seq": i, "variant": variant}),
        }
        if variant != "older":
            event["tenant"] = "acme"
        if variant == "newer":
            event["priority"] = 7
        value = serializer(event, SerializationContext(topic, MessageField.VALUE))
        producer.produce(topic, key=event["subject"].encode(), value=value, on_delivery=report)
        ids.append(event_id)
    left = producer.flush(30)
    if left or failures:
        raise SystemExit(f"{left} records unsent, failures: {failures[:3]}")
    print(json.dumps(ids))


if __name__ == "__main__":
    main()
