"""A node's TOML config as typed, bounded settings; one default per option."""
