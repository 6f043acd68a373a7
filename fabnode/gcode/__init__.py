"""G-code analysis: pure; parse, scan, estimate and preflight a file's text."""
