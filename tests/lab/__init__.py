"""Real-server test lab: BIND9, Unbound, Pebble and PostgreSQL on loopback (see servers.py)."""
