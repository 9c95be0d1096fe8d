"""`cbmir` sub-commands that need torch (training extras)."""
