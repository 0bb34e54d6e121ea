"""Metrics and logs. Nothing here ever sees a credential: headers are never logged or labelled."""
