"""TrustLLM safety tasks: one module per dataset file."""
