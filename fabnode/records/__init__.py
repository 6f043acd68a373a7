"""The node's SQLite: usage log, members and badges, schema and migrations, reports, storage guard."""
