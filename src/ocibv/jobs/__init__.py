"""Long work as database rows: a worker claims a row, heartbeats progress, finishes it.

Jobs survive restarts: rows left running by a dead process are requeued on start, and every
handler is written to be re-run from the beginning safely (resume or end FAULTY).
"""
