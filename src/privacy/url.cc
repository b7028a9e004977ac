// Filled in by the url work.
