"""Internals of the cluster layer; not a public API."""
