"""Starting the real parts (Kafka broker, ...) of the distributed stack on one machine."""
