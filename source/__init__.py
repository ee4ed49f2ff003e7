"""whisperfarm-source: the CLI that streams audio and video files to the farm.

Each file is probed and decoded locally with PyAV (so unreadable input fails before any
connection is made), sent over protocol v1 in 1000-frame packets at its native sample rate
and channel count, and its transcript is printed and saved as txt/json.
"""
