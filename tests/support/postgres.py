"""The private PostgreSQL of the tests: see cbmir/tools/pg_server.py (shared with `make cluster`, bench/)."""
from cbmir.tools.pg_server import PostgresServer, find_bindir, free_port, missing_reason  # noqa: F401
