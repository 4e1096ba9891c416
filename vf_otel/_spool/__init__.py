"""The durable spool: parked requests in SQLite, shared by processes."""
