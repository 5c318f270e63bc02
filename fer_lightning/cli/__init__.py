"""The command line: ``fer-lightning`` (:mod:`fer_lightning.cli.main`) and its subcommands."""
