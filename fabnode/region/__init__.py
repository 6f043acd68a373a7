"""The region's side: collector, store (SQLite or PostgreSQL), report and plot; nothing of the node."""
