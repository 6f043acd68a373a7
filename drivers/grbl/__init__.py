"""GRBL 1.1's host protocol, sans-I/O: character counting, real-time bytes, codes."""
