"""TrustLLM privacy tasks: one module per dataset file."""
