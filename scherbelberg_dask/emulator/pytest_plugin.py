"""pytest fixtures for testing against the local Hetzner Cloud emulator (filled in by the emulator work)."""
