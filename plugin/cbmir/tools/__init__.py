"""Offline tools behind the `cbmir` command (import, demo, embed, verify): an optional extra
(`pip install .[tools]`), never imported by the plugin.
"""
