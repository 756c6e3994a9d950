"""streams: a Kafka-native webhook delivery platform."""

__version__ = "0.1.0"
