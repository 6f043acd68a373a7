"""Telemetry: the usage log's outbox to the region's MQTT broker."""
