"""Hardware and firmware protocols. Imports nothing of fabnode/ or simulators/."""
