"""The store: reads, pages, writes, the change order and its feed, prepared statements; SQL only here and in models."""
