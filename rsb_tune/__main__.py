from rsb_tune.cli import entry

entry()
