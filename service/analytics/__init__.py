"""Analytics: sessions, response and assignment times, AI share, pages, peak hours, operator load."""
