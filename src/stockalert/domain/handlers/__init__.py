"""Command, event and query handlers, one module per use case.

| module | use case |
|---|---|
| `accounts` | register, subscriptions (set / remove), account deletion |
| `login` | password check, bearer token |
| `collection` | price collection cycle, storing new quotes, ticker statuses |
| `alerting` | quotes through the alert engine (`domain/alerting/`), its index of subscriptions |
| `delivery` | e-mailing notifications through the ledger, retries with backoff |
| `cleanup` | retention of quotes and stored replies |
| `queries` | the read side (CQRS): values, subscriptions, history, who a token is |

Handlers of idempotent commands run inside the request-ledger transaction that
`domain.request_ledger.run_once` opens and commits: they must not commit. The others open and
commit their own unit of work.
"""
