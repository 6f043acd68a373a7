"""Marlin's host protocol, sans-I/O: line numbers, checksums, resends, the window."""
