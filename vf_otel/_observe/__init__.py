"""Self-observability: OpenTelemetry metrics and rate-limited warnings."""
