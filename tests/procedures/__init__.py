"""Scenarios of the complaint procedures (the seeds and the regulator's rules), end to end."""
