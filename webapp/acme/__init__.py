"""Internals of the ACME adapter; the public API is `webapp.acme_client`."""
