"""The broker: WebSocket/REST edge, admission, spool, job store, ZeroMQ dispatcher."""
