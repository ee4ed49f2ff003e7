"""whisperfarm worker: one long-lived Whisper model serving many audio streams.

The worker connects to the broker as a ZeroMQ DEALER, receives the audio of assigned
streams packet by packet, decodes it while the upload goes on and sends segments and a
final transcript back. See `workers.worker` for the protocol side and `workers.stream`
for the per-stream decoding policy.
"""
