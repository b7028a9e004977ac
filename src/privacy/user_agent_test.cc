// Tests for user_agent, filled in with it.
