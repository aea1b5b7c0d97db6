"""One module per scenario; each ``run(ctx)`` returns its results (see ``bench/README.md``)."""
