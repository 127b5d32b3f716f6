"""Running it: the daemon, scheduled jobs, metrics, logs, config checks."""
