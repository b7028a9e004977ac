// Filled in by the detectors work.
