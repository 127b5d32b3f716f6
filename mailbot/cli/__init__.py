"""The command line: parser, command handlers, reports."""
