"""In-memory adapters: `storage` (every storage port, transactional) and `fakes` (clock,
ids, hasher, mailer, price source doubles)."""
