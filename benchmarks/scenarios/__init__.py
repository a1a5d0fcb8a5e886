"""Scenarios that answer tuning questions (issue 12): `race` (the idle-timeout race, nginx's 502s)
and `ports` (ephemeral ports against TIME_WAIT). Each writes a results CSV, a PNG and a verdict."""
