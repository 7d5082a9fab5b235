"""The judge: a gRPC server hosting evaluators by name, and a dispatcher that consumes completions,
calls the evaluators each task names, and publishes judgments."""
