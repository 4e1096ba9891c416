"""Delivery: queue and worker, attempt loop, retry and circuit policy, wire, client, counts."""
