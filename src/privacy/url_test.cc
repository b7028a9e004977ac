// Tests for url, filled in with it.
