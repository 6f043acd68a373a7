"""The far side of each wire (firmware on a pty, GPIO pins, badge taps).

Imports nothing of fabnode/ or drivers/.
"""
