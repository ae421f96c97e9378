"""What the isolated executors share: the worker's source, process, client and runner."""
