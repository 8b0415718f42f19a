"""Embedders, vector and lexical indexes, fusion, and versioned bundles. No HTTP, no event store."""
