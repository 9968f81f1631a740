"""Real Jabber clients driven as people use them: typed at, and read from their screens."""
