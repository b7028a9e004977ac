// Filled in by the policy-file work.
