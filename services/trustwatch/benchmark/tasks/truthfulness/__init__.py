"""TrustLLM truthfulness tasks: one module per dataset file."""
