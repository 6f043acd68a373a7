"""A Marlin firmware simulator on a pty, written from Marlin's documented behaviour."""
