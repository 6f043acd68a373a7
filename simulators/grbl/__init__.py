"""A GRBL 1.1h laser simulator on a pty, written from GRBL's documented behaviour."""
