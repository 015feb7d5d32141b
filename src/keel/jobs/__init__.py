"""Background jobs: the queue (huey) carries job ids; the database holds each job's state and payloads."""
