"""Developer scripts, not part of the installed package: the sample generator and the UI screenshots."""
