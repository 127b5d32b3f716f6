"""Exit codes of every mailbot command (sysexits.h): what an MTA's pipe transport,
systemd and scripts read from us.

0 done, 2 usage or config error, 65 data error (the mail was quarantined),
75 temporary failure (retry later: the database or relay is unavailable).
"""

EX_OK = 0
EX_USAGE = 2
EX_DATAERR = 65
EX_TEMPFAIL = 75
