"""`cbmir` sub-commands that need no torch."""
