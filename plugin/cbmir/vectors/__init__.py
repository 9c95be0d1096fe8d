"""Vectors at rest and the search over them: store (SQLite, the truth), index (Annoy, a
disposable cache rebuilt from the store), search (filters, grouping, percentiles).
"""
