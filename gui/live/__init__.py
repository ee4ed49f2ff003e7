"""Live microphone sessions: the browser's audio relayed to the broker as a live stream."""
