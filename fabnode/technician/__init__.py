"""The technician's tools: calibration routines (sans-I/O dialogues) and the doctor."""
