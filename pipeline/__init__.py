"""Event-driven backbone for AI agents and chatbots on Apache Kafka."""

__version__ = "0.1.0"
