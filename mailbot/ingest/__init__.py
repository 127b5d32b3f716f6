"""The one write path: raw bytes from any channel to recorded, routed mail."""
