"""Business hours: weekly schedules in a time zone, with holidays, and the arithmetic of open time."""
