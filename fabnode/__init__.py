"""fabnode: badge access, G-code streaming, usage log and telemetry for one fab lab machine."""

__version__ = "0.1.0"
