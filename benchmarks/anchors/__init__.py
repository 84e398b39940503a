"""Servers a user would run instead of vecsift, started by the load benchmark."""
