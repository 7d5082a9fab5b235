"""The scheduler: a suite and its targets become prompt jobs; the run and its manifest are recorded."""
