"""Reads a topic Herald wrote with `output.format = "registry"` the way a
registry-aware consumer does: confluent-kafka's AvroDeserializer, which
takes each value's schema id from the Confluent wire format and fetches the
writer schema from the Schema Registry. Used by tests/tests/registry.rs.

    avro_consumer.py BOOTSTRAP TOPIC REGISTRY_URL COUNT

Prints the first COUNT values (read_committed, from the start) as a JSON
list, or fails after 60 s without them.
"""

import json
import sys
import time
import uuid

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main():
    bootstrap, topic, registry_url, count = sys.argv[1:5]
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"avro-consumer-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    values = []
    deadline = time.monotonic() + 60
    while len(values) < int(count):
        if time.monotonic() > deadline:
            raise SystemExit(f"read {len(values)} of {count} records from {topic}")
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            raise SystemExit(f"consumer error: {msg.error()}")
        ctx = SerializationContext(topic, MessageField.VALUE)
        values.append(deserializer(msg.value(), ctx))
    consumer.close()
    print(json.dumps(values, default=str))


if __name__ == "__main__":
    main()
