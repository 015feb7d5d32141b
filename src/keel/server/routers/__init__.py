"""Thin routers over Keel's services."""
