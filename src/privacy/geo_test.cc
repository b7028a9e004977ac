// Tests for geo, filled in with it.
