"""Upload bodies as slicers send them."""
