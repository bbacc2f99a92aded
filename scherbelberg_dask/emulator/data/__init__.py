"""Data files of the emulator (the server type, location and image catalog)."""
