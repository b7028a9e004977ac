// Tests for detectors, filled in with it.
