"""Badge readers: nfcpy, a keyboard wedge, and a simulated one; a held badge is one tap."""
