"""`fabnode run`: the controller's one loop, its adapters and desks, and the wiring."""
