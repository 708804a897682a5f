"""paycore's shared kernel: errors, money, ids, field encryption, API keys, idempotency, outbox,
state-event base models, and the admin and API base classes. It imports no app."""
