"""What every request leaves behind: metrics, a log line, a request id."""
