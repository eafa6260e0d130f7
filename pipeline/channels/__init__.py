"""Channels: verify and parse what comes in (inbound), send what goes out (outbound)."""
