"""Serving: inference engines behind one interface, the ZMQ protocol, server, client, dashboard."""
