"""whisperfarm GUI: a NiceGUI app that uploads files to the farm and shows their jobs live.

It is one more client of the broker: uploads stream over `/v1/stream` through the shared
`whisperfarm.streaming` client, and jobs, transcripts and the farm view come over REST and
`/v1/events`. The only state it owns is its rejected rows (and the files kept for their
retry) under `--data-dir`; everything else is read from the broker.
"""
