"""`make demo`: a whole day in a fab lab, on simulators. Not in the wheel; nothing imports it."""
