// Filled in by the user_agent work.
