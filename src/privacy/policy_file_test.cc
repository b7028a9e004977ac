// Tests for the policy file, filled in with it.
