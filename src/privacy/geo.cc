// Filled in by the geo work.
