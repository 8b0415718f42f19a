"""Offline evaluation: retrieval metrics, threshold sweeps, labeled-query loading. No server needed."""
