"""The Event: the value every source builds once (validated, coerced, redacted)."""
