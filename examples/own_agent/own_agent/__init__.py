"""A shop's own agent on kafka-agent-pipeline: an event type, a handler, two tools."""
