"""The command line: the top of the import graph (it imports flows; nothing imports it)."""

# the one line a Ctrl-C ends the command with (exit status 130)
INTERRUPTED = ("interrupted: stopped; requests in flight were cancelled (a file being uploaded may have been "
               "stored: the next run reuses it or removes the duplicate; a fine-tuning job keeps running unless "
               "--cancel-job-on-cancel said otherwise)")
