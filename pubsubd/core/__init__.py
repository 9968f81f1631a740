"""Server core: sessions, the router (all routing rules in one place), the hook bus, modules."""
