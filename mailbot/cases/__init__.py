"""Case records and rules: threading, actions, agent mail, deadlines, lifecycle."""
